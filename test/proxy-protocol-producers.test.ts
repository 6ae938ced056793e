// Real PROXY protocol producers in front of Node http, https and http2
// servers wrapped by acceptProxyProtocol: Debian's haproxy (send-proxy,
// send-proxy-v2, send-proxy-v2-ssl-cn with proxy-v2-options TLVs) and nginx's
// stream module (`proxy_protocol on`). Everything runs on loopback: each
// client binds its own 127.0.0.N (or ::1), so the address the server reports
// can only have come from the header. haproxy and nginx are child processes
// of this test with configs in a temp dir, bounded in time and always
// stopped. Missing binaries FAIL the suite (.ci/run installs them).
import { spawn, type ChildProcess, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lookup } from '../src/index';
import '../src/register';
import { acceptProxyProtocol } from '../src/proxy-protocol/index';
import type { ProxyProtocolHandle } from '../src/proxy-protocol/index';
import { selfSigned } from './support/tls';

const FIXTURES = join(__dirname, 'fixtures', 'proxy-protocol');

function binary(name: string, path: string): string {
  try {
    execFileSync('sh', ['-c', `command -v ${path}`], { stdio: 'pipe' });
  } catch {
    throw new Error(`${name} is not installed (${path}): apt-get install haproxy nginx libnginx-mod-stream (.ci/run does)`);
  }
  return path;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as net.AddressInfo;
  s.close();
  return port;
}

/** What the Node server saw, sent back as the response body. */
function seen(socket: net.Socket) {
  const r = lookup(socket);
  const t = r.tlvs;
  return {
    real: socket.realRemoteAddress,
    realPort: socket.realRemotePort,
    source: r.source,
    proxy: r.proxy?.address,
    destination: r.destination,
    tlvs: t && {
      alpn: t.alpn, authority: t.authority, crc32c: t.crc32c, uniqueId: t.uniqueId?.toString('latin1'),
      ssl: t.ssl && { tls: t.ssl.tls, version: t.ssl.version, cipher: t.ssl.cipher, sigAlg: t.ssl.sigAlg, keyAlg: t.ssl.keyAlg, cn: t.ssl.cn },
      types: t.raw.map((x) => x.type),
    },
  };
}
type Seen = ReturnType<typeof seen>;

const material = selfSigned();
const servers: net.Server[] = [];
const handles: ProxyProtocolHandle[] = [];
const nodePorts: Record<string, number> = {};

async function startNodeServers(): Promise<void> {
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(seen(req.socket as net.Socket)));
  };
  const made: Record<string, net.Server> = {
    NODE_HTTP: http.createServer(handler),
    NODE_HTTPS: https.createServer({ ...material }, handler),
    NODE_H2: http2.createSecureServer({ ...material }, handler),
    NODE_H2C: http2.createServer(handler),
  };
  for (const [name, server] of Object.entries(made)) {
    // haproxy and nginx connect from 127.0.0.1; clients use 127.0.0.2 and up
    handles.push(acceptProxyProtocol(server, { trusted: ['127.0.0.1/32'], timeoutMs: 5000 }));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    nodePorts[name] = (server.address() as net.AddressInfo).port;
    servers.push(server);
  }
}

function fill(template: string, values: Record<string, string | number>): string {
  return template.replace(/@([A-Z0-9_]+)@/g, (_, k: string) => {
    if (!(k in values)) throw new Error(`no value for @${k}@`);
    return String(values[k]);
  });
}

/** Starts a producer and waits until every port accepts, or fails with its output. */
async function startProducer(cmd: string, args: string[], ports: number[]): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  const deadline = Date.now() + 8000;
  for (const port of ports) {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${cmd} exited with ${child.exitCode}: ${out}`);
      if (Date.now() > deadline) throw new Error(`${cmd} did not listen on ${port} within 8 s: ${out}`);
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.on('connect', () => { s.destroy(); resolve(true); });
        s.on('error', () => resolve(false));
      });
      if (ok) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { child, output: () => out };
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await once(child, 'exit');
  clearTimeout(killer);
}

let nextClient = 2;
/** A loopback source address of its own for each request. */
const clientAddress = () => `127.0.0.${nextClient++}`;

interface Answer { body: Seen; local: { address: string; port: number } }

function get(kind: 'http' | 'https', port: number, localAddress: string, host = '127.0.0.1'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const mod = kind === 'http' ? http : https;
    const req = mod.get({ host, port, path: '/', localAddress, agent: false, rejectUnauthorized: false, servername: 'localhost', timeout: 8000 }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        const local = { address: res.socket.localAddress!, port: res.socket.localPort! };
        try { resolve({ body: JSON.parse(text), local }); } catch { reject(new Error(`${res.statusCode}: ${text}`)); }
      });
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
  });
}

async function h2Get(url: string, localAddress: string): Promise<Answer> {
  const session = http2.connect(url, { localAddress, rejectUnauthorized: false, servername: 'localhost' } as http2.SecureClientSessionOptions);
  try {
    session.on('error', () => {});
    const req = session.request({ ':path': '/' });
    let text = '';
    req.on('data', (d) => { text += d; });
    const timer = setTimeout(() => req.destroy(new Error('h2 request timed out')), 8000);
    await once(req, 'end');
    clearTimeout(timer);
    return { body: JSON.parse(text), local: { address: session.socket.localAddress!, port: session.socket.localPort! } };
  } finally {
    session.close();
  }
}

function expectClient(a: Answer) {
  // the server reports the address and port the producer accepted the client from
  expect(a.body.real).toBe(a.local.address);
  expect(a.body.realPort).toBe(a.local.port);
  expect(a.body.source).toBe('proxy-protocol');
  expect(a.body.proxy).toBe('127.0.0.1');
}

const dir = mkdtempSync(join(tmpdir(), 'node-toa-pp-producers-'));
beforeAll(startNodeServers);
afterAll(() => {
  for (const s of servers) { (s as http.Server).closeAllConnections?.(); s.close(); }
  rmSync(dir, { recursive: true, force: true });
});

describe('haproxy', () => {
  let proc: Awaited<ReturnType<typeof startProducer>> | undefined;
  const ports: Record<string, number> = {};
  beforeAll(async () => {
    const haproxy = binary('haproxy', 'haproxy');
    for (const k of ['HTTP_V1', 'HTTP_V2', 'HTTPS_V2', 'H2_V2', 'H2C_V1', 'SSL_V2']) ports[k] = await freePort();
    const pem = join(dir, 'haproxy.pem');
    writeFileSync(pem, Buffer.concat([material.cert, material.key]));
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(cfg, fill(readFileSync(join(FIXTURES, 'haproxy.cfg'), 'utf8'), { ...ports, ...nodePorts, PEM: pem }));
    proc = await startProducer(haproxy, ['-f', cfg, '-db'], Object.values(ports));
  }, 20_000);
  afterAll(() => stop(proc?.child));

  it('send-proxy (v1) → http', async () => {
    const a = await get('http', ports.HTTP_V1, clientAddress());
    expectClient(a);
    expect(a.body.tlvs).toBeUndefined();
    expect(a.body.destination).toEqual({ address: '127.0.0.1', port: ports.HTTP_V1, family: 'IPv4' });
  });

  it('send-proxy-v2 with crc32c and unique-id → http, from IPv4 and from ::1', async () => {
    const a = await get('http', ports.HTTP_V2, clientAddress());
    expectClient(a);
    expect(a.body.tlvs?.crc32c).toBeTypeOf('number');
    // unique-id-format %{+X}o %ci:%cp_...: the client's address and port in upper-case hex
    const hex = (n: number, w: number) => n.toString(16).toUpperCase().padStart(w, '0');
    const ip = a.local.address.split('.').map((x) => hex(+x, 2)).join('');
    expect(a.body.tlvs?.uniqueId).toMatch(new RegExp(`^${ip}:${hex(a.local.port, 4)}_`));
    const b = await get('http', ports.HTTP_V2, '::1', '::1');
    expectClient(b);
    expect(b.body.real).toBe('::1');
  });

  it('send-proxy-v2 → https (TLS passed through)', async () => {
    expectClient(await get('https', ports.HTTPS_V2, clientAddress()));
  });

  it('send-proxy-v2 → http2 over TLS', async () => {
    expectClient(await h2Get(`https://127.0.0.1:${ports.H2_V2}`, clientAddress()));
  });

  it('send-proxy (v1) → http2 cleartext', async () => {
    expectClient(await h2Get(`http://127.0.0.1:${ports.H2C_V1}`, clientAddress()));
  });

  it('send-proxy-v2-ssl-cn: haproxy terminates TLS and passes SSL, authority, unique ID, CRC32C TLVs', async () => {
    const a = await get('https', ports.SSL_V2, clientAddress());
    expectClient(a);
    expect(a.body.tlvs?.ssl).toMatchObject({ tls: true, version: expect.stringMatching(/^TLSv1\.[23]$/), cipher: expect.any(String), sigAlg: expect.any(String), keyAlg: expect.any(String) });
    expect(a.body.tlvs?.authority).toBe('localhost');
    expect(a.body.tlvs?.crc32c).toBeTypeOf('number');
    expect(a.body.tlvs?.types).toEqual(expect.arrayContaining([0x02, 0x03, 0x05, 0x20]));
  });

  it('many concurrent requests through haproxy, each with its own client address', async () => {
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => get('http', i % 2 ? ports.HTTP_V1 : ports.HTTP_V2, clientAddress())));
    for (const a of answers) expectClient(a);
    expect(new Set(answers.map((a) => a.body.real)).size).toBe(40);
  });
});

describe('nginx stream, proxy_protocol on', () => {
  let proc: Awaited<ReturnType<typeof startProducer>> | undefined;
  const ports: Record<string, number> = {};
  beforeAll(async () => {
    const nginx = binary('nginx', 'nginx');
    if (!readFileSync('/usr/lib/nginx/modules/ngx_stream_module.so', { flag: 'r' }).length) throw new Error('ngx_stream_module.so is empty');
    for (const k of ['HTTP_V1', 'HTTPS_V1', 'H2_V1']) ports[k] = await freePort();
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, fill(readFileSync(join(FIXTURES, 'nginx.conf'), 'utf8'), { ...ports, ...nodePorts, DIR: dir }));
    proc = await startProducer(nginx, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], Object.values(ports));
  }, 20_000);
  afterAll(() => stop(proc?.child));

  it('→ http (v1), from IPv4 and from ::1', async () => {
    const a = await get('http', ports.HTTP_V1, clientAddress());
    expectClient(a);
    expect(a.body.destination?.port).toBe(ports.HTTP_V1);
    const b = await get('http', ports.HTTP_V1, '::1', '::1');
    expectClient(b);
    expect(b.body.real).toBe('::1');
  });

  it('→ https', async () => {
    expectClient(await get('https', ports.HTTPS_V1, clientAddress()));
  });

  it('→ http2 over TLS', async () => {
    expectClient(await h2Get(`https://127.0.0.1:${ports.H2_V1}`, clientAddress()));
  });
});

describe('nothing was refused along the way', () => {
  it('counters', () => {
    const sum = (k: 'proxied' | 'malformed' | 'badTlv' | 'checksum' | 'timeout' | 'untrusted') => handles.reduce((n, h) => n + h.counters[k], 0);
    expect(sum('proxied')).toBeGreaterThanOrEqual(50);
    expect({ malformed: sum('malformed'), badTlv: sum('badTlv'), checksum: sum('checksum'), timeout: sum('timeout'), untrusted: sum('untrusted') })
      .toEqual({ malformed: 0, badTlv: 0, checksum: 0, timeout: 0, untrusted: 0 });
  });
});
