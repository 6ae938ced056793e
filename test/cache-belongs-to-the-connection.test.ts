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

async function twoServers(): Promise<[number, number]> {
  const a = net.createServer((s) => s.end());
  const b = net.createServer((s) => s.end());
  return [await listen(a, '127.0.0.1'), await listen(b, '::1')];
}

async function connectAgain(socket: net.Socket, port: number, host: string): Promise<void> {
  socket.connect(port, host);
  await once(socket, 'connect');
}

it('a reconnected client reports the new peer from the getters and lookup()', async () => {
  const [portA, portB] = await twoServers();
  const c = new net.Socket();
  track({ close: () => c.destroy() });
  await connectAgain(c, portA, '127.0.0.1');
  expect(c.realRemotePort).toBe(portA);
  expect(lookup(c)).toMatchObject({ address: '127.0.0.1', port: portA });
  c.destroy();
  await once(c, 'close');
  await connectAgain(c, portB, '::1');
  expect(c.realRemoteAddress).toBe('::1');
  expect(c.realRemotePort).toBe(portB);
  expect(c.realRemoteFamily).toBe('IPv6');
  expect(lookup(c)).toMatchObject({ address: '::1', port: portB, family: 'IPv6', source: 'peer' });
});

it('a reconnected client destroyed before anyone asked has no answer, not the old one', async () => {
  const [portA, portB] = await twoServers();
  const c = new net.Socket();
  track({ close: () => c.destroy() });
  await connectAgain(c, portA, '127.0.0.1');
  expect(c.realRemotePort).toBe(portA);
  c.destroy();
  await once(c, 'close');
  await connectAgain(c, portB, '::1');
  c.destroy();
  expect(c.realRemoteAddress).toBeUndefined();
  expect(c.realRemotePort).toBeUndefined();
  expect(() => lookup(c)).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_CLOSED' }));
});
