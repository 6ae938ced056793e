// With no TOA provider on this host, every kind of socket reports exactly
// what Node's own remoteAddress reports, with source 'peer'.
import { once } from 'node:events';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { lookup } from '../src/index';
import '../src/register';
import { closeAll, connect, listen, nextConnection, track } from './support/net';
import { selfSigned, type TlsMaterial } from './support/tls';

let material: TlsMaterial;
beforeAll(() => { material = selfSigned(); });
afterEach(closeAll);

function expectLikeNode(socket: net.Socket) {
  const expected = { address: socket.remoteAddress, port: socket.remotePort, family: socket.remoteFamily };
  expect(expected.address).toBeTypeOf('string');
  expect(lookup(socket)).toEqual({ ...expected, source: 'peer' });
  expect(socket.realRemoteAddress).toBe(expected.address);
  expect(socket.realRemotePort).toBe(expected.port);
  expect(socket.realRemoteFamily).toBe(expected.family);
}

describe('net.Server', () => {
  it.each([
    ['0.0.0.0', '127.0.0.1', '127.0.0.1', 'IPv4'],
    ['::', '127.0.0.1', '::ffff:127.0.0.1', 'IPv6'],
    ['::', '::1', '::1', 'IPv6'],
    ['::1', '::1', '::1', 'IPv6'],
  ])('listening on %s, client from %s, reports %s', async (host, client, shown, family) => {
    const server = net.createServer();
    const port = await listen(server, host);
    const accepted = nextConnection(server);
    const c = await connect(port, client);
    const s = await accepted;
    expectLikeNode(s);
    expect(s.realRemoteAddress).toBe(shown);
    expect(s.realRemoteFamily).toBe(family);
    expect(s.realRemotePort).toBe(c.localPort);
  });

  it('works with pauseOnConnect before any data flows', async () => {
    const server = net.createServer({ pauseOnConnect: true });
    const port = await listen(server, '127.0.0.1');
    const accepted = nextConnection(server);
    const c = await connect(port, '127.0.0.1');
    const s = await accepted;
    expect(s.isPaused()).toBe(true);
    expect(s.realRemotePort).toBe(c.localPort);
    expectLikeNode(s);
  });

  it('works on client sockets after connect (the peer is the server)', async () => {
    const server = net.createServer();
    const port = await listen(server, '::');
    const c = await connect(port, '::1');
    expect(lookup(c)).toEqual({ address: '::1', port, family: 'IPv6', source: 'peer' });
    expect(c.realRemotePort).toBe(port);
  });

  it('caches: the answer is computed once per socket', async () => {
    const server = net.createServer();
    const port = await listen(server, '127.0.0.1');
    const accepted = nextConnection(server);
    await connect(port, '127.0.0.1');
    const s = await accepted;
    expect(lookup(s)).toBe(lookup(s));
    expect(Object.isFrozen(lookup(s))).toBe(true);
  });
});

describe('TLS and HTTP', () => {
  it('tls.Server: the TLS socket reports its TCP peer', async () => {
    const server = tls.createServer(material);
    const port = await listen(server, '::');
    const accepted = nextConnection(server, 'secureConnection');
    const c = tls.connect({ port, host: '127.0.0.1', ca: material.cert, servername: 'localhost' });
    track({ close: () => c.destroy() });
    await once(c, 'secureConnect');
    const s = (await accepted) as tls.TLSSocket;
    expectLikeNode(s);
    expect(s.realRemotePort).toBe(c.localPort);
  });

  it('http: req.socket', async () => {
    const server = http.createServer((req, res) => {
      res.end(JSON.stringify({ seen: req.socket.realRemoteAddress, node: req.socket.remoteAddress, port: req.socket.realRemotePort }));
    });
    const port = await listen(server, '::');
    const body = await get(http, `http://127.0.0.1:${port}/`);
    expect(body.seen).toBe('::ffff:127.0.0.1');
    expect(body.seen).toBe(body.node);
  });

  it('https: req.socket', async () => {
    const server = https.createServer(material, (req, res) => {
      res.end(JSON.stringify({ seen: req.socket.realRemoteAddress, node: req.socket.remoteAddress, source: lookup(req.socket).source }));
    });
    const port = await listen(server, '127.0.0.1');
    const body = await get(https, `https://localhost:${port}/`, { ca: material.cert });
    expect(body).toEqual({ seen: '127.0.0.1', node: '127.0.0.1', source: 'peer' });
  });

  it.each([
    ['cleartext', false],
    ['TLS', true],
  ])('http2 %s: session.socket and compat req.socket', async (_name, secure) => {
    const server = secure
      ? http2.createSecureServer(material)
      : http2.createServer();
    server.on('request', (req, res) => {
      const sessionSocket = req.stream.session!.socket;
      res.end(JSON.stringify({
        session: sessionSocket.realRemoteAddress,
        sessionPort: sessionSocket.realRemotePort,
        compat: req.socket.realRemoteAddress,
        node: req.socket.remoteAddress,
        lookup: lookup(req.socket),
      }));
    });
    const port = await listen(server, '::');
    const client = http2.connect(`${secure ? 'https' : 'http'}://localhost:${port}`, secure ? { ca: material.cert } : {});
    track({ close: () => client.close() });
    const stream = client.request({ ':path': '/' });
    stream.setEncoding('utf8');
    let text = '';
    stream.on('data', (d: string) => { text += d; });
    await once(stream, 'end');
    const body = JSON.parse(text);
    expect(body.node).toMatch(/^(::1|::ffff:127\.0\.0\.1)$/);
    expect(body.session).toBe(body.node);
    expect(body.compat).toBe(body.node);
    expect(body.sessionPort).toBe(body.lookup.port);
    expect(body.lookup.source).toBe('peer');
  });
});

function get(mod: typeof http | typeof https, url: string, options: https.RequestOptions = {}): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = (mod as typeof https).get(url, { ...options, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => resolve(JSON.parse(text)));
    });
    req.on('error', reject);
  });
}
