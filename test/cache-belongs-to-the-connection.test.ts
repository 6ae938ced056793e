// A cached answer belongs to one connection: a client net.Socket connected
// again after it closed reports its new peer, from the getters and from
// lookup(), even when it is destroyed before anyone asks.
import { once } from 'node:events';
import * as net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { lookup } from '../src/index';
import '../src/register';
import { closeAll, listen, track } from './support/net';

afterEach(closeAll);

/**
 * One client socket: connected to server A (127.0.0.1), asked there (both the
 * getters and lookup() cache an answer), closed, then connected to server B
 * (::1). Resolves with B's port, the socket connected to B.
 */
async function reconnected(): Promise<{ c: net.Socket; portB: number }> {
  const portA = await listen(net.createServer((s) => s.end()), '127.0.0.1');
  const portB = await listen(net.createServer((s) => s.end()), '::1');
  const c = new net.Socket();
  track({ close: () => c.destroy() });
  c.connect(portA, '127.0.0.1');
  await once(c, 'connect');
  expect(c.realRemotePort).toBe(portA);
  expect(lookup(c)).toMatchObject({ address: '127.0.0.1', port: portA });
  c.destroy();
  await once(c, 'close');
  c.connect(portB, '::1');
  await once(c, 'connect');
  return { c, portB };
}

it('a reconnected client reports the new peer from the getters and lookup()', async () => {
  const { c, portB } = await reconnected();
  expect(c.realRemoteAddress).toBe('::1');
  expect(c.realRemotePort).toBe(portB);
  expect(c.realRemoteFamily).toBe('IPv6');
  expect(lookup(c)).toMatchObject({ address: '::1', port: portB, family: 'IPv6', source: 'peer' });
});

it('a reconnected client destroyed before anyone asked has no answer, not the old one', async () => {
  const { c } = await reconnected();
  c.destroy();
  expect(c.realRemoteAddress).toBeUndefined();
  expect(c.realRemotePort).toBeUndefined();
  expect(() => lookup(c)).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_CLOSED' }));
});
