// The getters answer or say undefined, whatever the socket's state; lookup()
// throws only coded errors. (The missing-addon state runs in its own
// process: test/missing-addon-keeps-serving.test.ts.)
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { lookup } from '../src/index';
import '../src/register';
import { closeAll, connect, listen, track } from './support/net';

afterEach(closeAll);

// A client socket: nothing captured it at accept time.
it('an fd closed under the socket: getters undefined, lookup() a system error', async () => {
  const server = net.createServer({ pauseOnConnect: true });
  const port = await listen(server, '::');
  const s = await connect(port, '127.0.0.1');
  s.pause();
  const fd = (s as unknown as { _handle: { fd: number } })._handle.fd;
  closeSync(fd);
  // Hold the number so nothing else of this process gets it meanwhile.
  const placeholder = openSync('/dev/null', 'r');
  expect(placeholder).toBe(fd);
  try {
    expect(s.realRemoteAddress).toBeUndefined();
    expect(s.realRemotePort).toBeUndefined();
    expect(s.realRemoteFamily).toBeUndefined();
    expect(() => lookup(s)).toThrow(expect.objectContaining({ code: 'ENOTSOCK' }));
  } finally {
    // libuv closes the placeholder with the handle.
    s.destroy();
  }
});

it('http2 after the session is destroyed: compat req.socket getters are undefined, lookup(session.socket) throws ERR_SOCKET_CLOSED', async () => {
  const seen = new Promise<Record<string, unknown>>((resolve) => {
    const server = http2.createServer((req) => {
      const session = req.stream.session!;
      const sessionSocket = session.socket;
      const compat = req.socket;
      session.destroy();
      const out: Record<string, unknown> = { compat: compat.realRemoteAddress, compatPort: compat.realRemotePort };
      try { lookup(sessionSocket); } catch (e) { out.lookup = (e as { code?: string }).code; }
      // Node's own proxy throws on every property read of a destroyed
      // session's socket, remoteAddress included: no getter is reached.
      try { void sessionSocket.remoteAddress; } catch (e) { out.nodeRemoteAddress = (e as { code?: string }).code; }
      resolve(out);
    });
    void listen(server, '::').then((port) => {
      const client = http2.connect(`http://localhost:${port}`);
      client.on('error', () => {});
      track({ close: () => client.destroy() });
      const req = client.request({ ':path': '/' });
      req.on('error', () => {});
      req.end();
    });
  });
  expect(await seen).toEqual({ compat: undefined, compatPort: undefined, lookup: 'ERR_SOCKET_CLOSED', nodeRemoteAddress: 'ERR_HTTP2_SOCKET_UNBOUND' });
});

it('a socket that never connected, then connects: undefined, then the peer', async () => {
  const server = net.createServer();
  const port = await listen(server, '127.0.0.1');
  const c = new net.Socket();
  track({ close: () => c.destroy() });
  expect(c.realRemoteAddress).toBeUndefined();
  c.connect(port, '127.0.0.1');
  await once(c, 'connect');
  expect(c.realRemotePort).toBe(port);
});
