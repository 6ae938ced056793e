// register captures the answer when the socket is accepted, so reading it
// after the client reset the connection or after destroy() still works —
// where Node's remoteAddress, asked too late, has nothing.
import { once } from 'node:events';
import * as http from 'node:http';
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

// A deny-list or a limiter destroys the socket in its own 'connection'
// listener, before anything else runs: the capture must already be done,
// for a plain net.Server and for an http.Server (whose own listener runs
// first), whoever added the listener and however early.
it.each([
  ['net.Server, listener passed to createServer', () => net.createServer((s) => deny(s))],
  ['net.Server, prependListener', () => net.createServer().prependListener('connection', (s) => deny(s))],
  ['http.Server, on(connection)', () => http.createServer().on('connection', (s) => deny(s))],
])('a socket destroyed synchronously in a connection listener: %s', async (_name, make) => {
  denied = [];
  const server = make();
  const port = await listen(server, '::');
  const c = net.connect(port, '127.0.0.1');
  c.on('error', () => {});
  track({ close: () => c.destroy() });
  await once(c, 'connect');
  const clientPort = c.localPort;
  await once(c, 'close');
  expect(denied).toEqual([{ remoteAddress: undefined, real: '::ffff:127.0.0.1', port: clientPort, family: 'IPv6' }]);
});

let denied: unknown[] = [];
function deny(s: net.Socket) {
  s.destroy();
  denied.push({ remoteAddress: s.remoteAddress, real: s.realRemoteAddress, port: s.realRemotePort, family: s.realRemoteFamily });
}

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
