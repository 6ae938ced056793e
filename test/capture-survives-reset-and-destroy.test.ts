// register captures the answer when the socket is accepted, so reading it
// after the client reset the connection or after destroy() still works —
// where Node's remoteAddress, asked too late, has nothing.
import { once } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { afterEach, expect, it } from 'vitest';
import { lookup } from '../src/index';
import '../src/register';
import { closeAll, connect, listen, nextConnection, track } from './support/net';
import { selfSigned } from './support/tls';

afterEach(closeAll);

it('a client that resets before the application asks', async () => {
  const server = net.createServer({ pauseOnConnect: true });
  const port = await listen(server, '::');
  const accepted = nextConnection(server);
  const c = await connect(port, '127.0.0.1');
  const clientPort = c.localPort;
  const s = await accepted;
  s.on('error', () => {});
  c.on('error', () => {});
  c.resetAndDestroy();
  s.resume();
  await new Promise((resolve) => s.once('close', resolve));
  // Node only caches remoteAddress once read; asked now it has nothing.
  expect(s.remoteAddress).toBeUndefined();
  expect(s.realRemoteAddress).toBe('::ffff:127.0.0.1');
  expect(s.realRemotePort).toBe(clientPort);
  // Only the address was captured; where it came from needs an open socket.
  expect(() => lookup(s)).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_CLOSED', message: expect.stringContaining('call lookup() while the socket is open') }));
});

it('lookup() called while open keeps its full answer after the reset', async () => {
  const server = net.createServer({ pauseOnConnect: true });
  const port = await listen(server, '::');
  const accepted = nextConnection(server);
  const c = await connect(port, '127.0.0.1');
  const s = await accepted;
  const before = lookup(s);
  s.on('error', () => {});
  c.on('error', () => {});
  c.resetAndDestroy();
  s.resume();
  await new Promise((resolve) => s.once('close', resolve));
  expect(lookup(s)).toBe(before);
  expect(before).toMatchObject({ address: '::ffff:127.0.0.1', source: 'peer' });
});

it('a socket read after destroy()', async () => {
  const server = net.createServer();
  const port = await listen(server, '127.0.0.1');
  const accepted = nextConnection(server);
  const c = await connect(port, '127.0.0.1');
  const s = await accepted;
  s.destroy();
  expect(s.realRemoteAddress).toBe('127.0.0.1');
  expect(s.realRemotePort).toBe(c.localPort);
  expect(s.realRemoteFamily).toBe('IPv4');
});

// Node publishes net.server.socket right after emitting 'connection', in the
// same synchronous step: a listener that reads the address computes it
// itself, one that doesn't finds it captured by its next microtask.
it('capture happens in the same step as the connection event', async () => {
  const server = net.createServer();
  const port = await listen(server, '127.0.0.1');
  const seen = new Promise<unknown>((resolve) => {
    server.on('connection', (s) => {
      queueMicrotask(() => resolve(Object.getOwnPropertySymbols(s).some((sym) => sym === Symbol.for('node-toa.result') || sym === Symbol.for('node-toa.address'))));
    });
  });
  await connect(port, '127.0.0.1');
  expect(await seen).toBe(true);
});

it('a TLS socket whose client resets: the TCP socket captured at accept answers', async () => {
  const material = selfSigned();
  const server = tls.createServer(material);
  const port = await listen(server, '127.0.0.1');
  const accepted = nextConnection(server, 'secureConnection');
  const raw = await connect(port, '127.0.0.1');
  const c = tls.connect({ socket: raw, ca: material.cert, servername: 'localhost' });
  track({ close: () => c.destroy() });
  c.on('error', () => {});
  await once(c, 'secureConnect');
  const clientPort = raw.localPort;
  const s = await accepted;
  s.on('error', () => {});
  raw.resetAndDestroy();
  await new Promise((resolve) => s.once('close', resolve));
  expect(s.remoteAddress).toBeUndefined();
  expect(s.realRemoteAddress).toBe('127.0.0.1');
  expect(s.realRemotePort).toBe(clientPort);
});
