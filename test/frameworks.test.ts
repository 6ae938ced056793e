// node-toa/fastify, node-toa/express and node-toa/koa against the real
// frameworks, with a real provider: the eBPF backend attached to a cgroup
// this test made (never the machine's root), and clients arriving through
// the LB emulator with TOA options, as behind a full-NAT balancer. Each
// framework's own client-IP API must show the TOA client.
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import Koa from 'koa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import fastifyToa from '../src/fastify';
import { toa as expressToa, type ExpressToaOptions } from '../src/express';
import { toa as koaToa, type KoaToaOptions } from '../src/koa';
import type { IntegrationOptions } from '../src/frameworks/common';
import { bpfBackend } from './bpf-support';
// @ts-expect-error plain ESM helper without types
import { createLoadBalancer } from './support/lb/index.mjs';

interface Lb {
  balancerAddress(family: 4 | 6): string;
  connect(o: { port: number; family: 4 | 6; toa?: { kind: number; address: string; port: number }; placement?: string }): Promise<{
    send(d: string): Promise<number>; recvAll(): Promise<Buffer>; close(): Promise<void>;
  }>;
  craft(specs: { port: number; ackOptions: Buffer; data: string; keepOpen?: boolean }[]): Promise<{ reply: Buffer; source: { address: string } }[]>;
  close(): Promise<void>;
}

const backend = bpfBackend('frameworks');
let lb: Lb;
let trusted: string[];
const servers: { close(): unknown }[] = [];

beforeAll(async () => {
  lb = await createLoadBalancer();
  trusted = [`${lb.balancerAddress(4)}/32`, `${lb.balancerAddress(6)}/128`];
  await backend.enable({ trusted, ipv4Kinds: [200], ipv6Kinds: [253] });
}, 60_000);
afterAll(async () => {
  await backend.disable();
  await lb?.close();
});
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

const CLIENT = { kind: 200, address: '198.51.100.7', port: 51000 };
const NAT64_CLIENT = { kind: 253, address: '2001:db8:cafe::7', port: 52000 };

interface Seen { status: number; body: { ip?: string; toa?: { address: string; source: string; trusted?: boolean; proxy?: { address: string } }; reason?: string } }

function parse(raw: Buffer): Seen {
  const text = raw.toString();
  const status = Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]);
  return { status, body: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) };
}

async function viaBalancer(port: number, toa = CLIENT, headers: Record<string, string> = {}, family: 4 | 6 = 4): Promise<Seen> {
  const conn = await lb.connect({ port, family, toa, placement: 'ack' });
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  await conn.send(`GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n${extra}\r\n`);
  const raw = await conn.recvAll();
  await conn.close();
  return parse(raw);
}

/**
 * A direct client that is not the balancer, forging a kind-200 option. The
 * crafter keeps only the reply's first bytes: the status line, and what the
 * handler saw (if it ran) from `lastSeen`.
 */
async function forged(port: number): Promise<{ status: number; seen: Seen['body'] | undefined }> {
  lastSeen = undefined;
  const option = Buffer.from([200, 8, 0x1f, 0x90, 203, 0, 113, 250]);
  const [r] = await lb.craft([{ port, ackOptions: option, data: 'GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', keepOpen: true }]);
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(r.reply.toString())?.[1]), seen: lastSeen };
}

let lastSeen: Seen['body'] | undefined;
const report = (body: Seen['body']) => { lastSeen = JSON.parse(JSON.stringify(body)); return body; };

const apps = {
  async fastify(options: IntegrationOptions & { trustProxy?: boolean | string } = {}, host = '::') {
    const { trustProxy, ...toaOptions } = options;
    const app: FastifyInstance = Fastify({ trustProxy: trustProxy ?? false });
    await app.register(fastifyToa, toaOptions);
    app.get('/', async (request) => report({ ip: request.ip, toa: request.toa }));
    await app.listen({ port: 0, host });
    servers.push({ close: () => app.close() });
    return (app.server.address() as AddressInfo).port;
  },
  async express(options: ExpressToaOptions = {}, host = '::') {
    const app = express();
    app.use(expressToa(options));
    app.get('/', (req, res) => { res.json(report({ ip: req.ip, toa: req.toa })); });
    return listen(http.createServer(app), host);
  },
  async koa(options: KoaToaOptions = {}, host = '::') {
    const app = new Koa();
    app.use(koaToa(options));
    app.use((ctx) => { ctx.body = report({ ip: ctx.request.ip, toa: ctx.state.toa as Seen['body']['toa'] }); });
    return listen(http.createServer(app.callback()), host);
  },
};

async function listen(server: http.Server, host: string): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  servers.push({ close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) });
  return (server.address() as AddressInfo).port;
}

describe.each(['fastify', 'express', 'koa'] as const)('%s', (name) => {
  it('the framework\'s client IP and the toa answer are the TOA client on a :: listener', async () => {
    const port = await apps[name]();
    const { status, body } = await viaBalancer(port);
    expect(status).toBe(200);
    expect(body.ip).toBe('::ffff:198.51.100.7');
    expect(body.toa).toMatchObject({ address: '::ffff:198.51.100.7', port: 51000, source: 'toa', trusted: true, proxy: { address: `::ffff:${lb.balancerAddress(4)}` } });
  });

  it('reject: a forged option from a direct client is refused with the configured status; without reject it is served as the peer', async () => {
    const refusing = await apps[name]({ reject: ['rejected'], rejectStatus: 451 });
    expect(await forged(refusing)).toEqual({ status: 451, seen: undefined });
    const open = await apps[name]();
    const served = await forged(open);
    expect(served.status).toBe(200);
    expect(served.seen!.toa).toMatchObject({ source: 'peer', rejected: true });
    expect(served.seen!.ip).toMatch(/^::ffff:203\.0\.113\.\d+$/);
    expect(served.seen!.ip).not.toBe('::ffff:203.0.113.250');
  });
});

describe('trust in the provider', () => {
  afterEach(async () => { await backend.enable({ trusted, ipv4Kinds: [200], ipv6Kinds: [253] }); });

  it.each(['fastify', 'express', 'koa'] as const)('%s: reject untrusted refuses TOA from a provider with no trusted ranges (403 by default)', async (name) => {
    await backend.enable({ trusted: [], ipv4Kinds: [200], ipv6Kinds: [253] });
    const port = await apps[name]({ reject: ['untrusted'] });
    expect(await viaBalancer(port)).toEqual({ status: 403, body: { error: 'client address not trusted', reason: 'untrusted' } });
  });
});

// Fastify starts its X-Forwarded-For walk from the socket's address, which
// the provider already made the TOA client: the balancer is no hop of its own.
describe('fastify trustProxy: the layer-4 balancer is not a hop', () => {
  const xff = { 'X-Forwarded-For': '192.0.2.1, 203.0.113.5' };

  it('off: request.ip is the TOA client, X-Forwarded-For ignored', async () => {
    const port = await apps.fastify({ trustProxy: false });
    expect((await viaBalancer(port, CLIENT, xff)).body.ip).toBe('::ffff:198.51.100.7');
  });

  it('trusting the TOA client (an L7 proxy in front of the balancer): the last X-Forwarded-For entry is the client', async () => {
    const port = await apps.fastify({ trustProxy: '198.51.100.7' });
    const { body } = await viaBalancer(port, CLIENT, xff);
    expect(body.ip).toBe('203.0.113.5');
    expect(body.toa).toMatchObject({ address: '::ffff:198.51.100.7', source: 'toa' });
  });

  it('trusting the balancer, as without TOA: no extra hop is taken from X-Forwarded-For', async () => {
    const port = await apps.fastify({ trustProxy: lb.balancerAddress(4) });
    expect((await viaBalancer(port, CLIENT, xff)).body.ip).toBe('::ffff:198.51.100.7');
  });
});

describe('NAT64 client on a 0.0.0.0 listener (AF_INET socket: getpeername cannot show it)', () => {
  it.each([['express', apps.express], ['koa', apps.koa]] as const)('%s: ip option shows the IPv6 client; without it the IP is the balancer', async (_name, make) => {
    const withIp = await make({ ip: true }, '0.0.0.0');
    const a = await viaBalancer(withIp, NAT64_CLIENT);
    expect(a.body.ip).toBe('2001:db8:cafe::7');
    expect(a.body.toa).toMatchObject({ address: '2001:db8:cafe::7', family: 'IPv6', source: 'toa' });
    const without = await make({}, '0.0.0.0');
    const b = await viaBalancer(without, NAT64_CLIENT);
    expect(b.body.ip).toBe(lb.balancerAddress(4));
    expect(b.body.toa).toMatchObject({ address: '2001:db8:cafe::7' });
  });

  it('fastify: request.toa has the IPv6 client', async () => {
    const port = await apps.fastify({}, '0.0.0.0');
    expect((await viaBalancer(port, NAT64_CLIENT)).body.toa).toMatchObject({ address: '2001:db8:cafe::7', source: 'toa' });
  });
});

describe('options are checked', () => {
  it.each([
    [{ reject: ['forged'] }, 'ERR_INVALID_ARG_VALUE'],
    [{ rejectStatus: 200 }, 'ERR_INVALID_ARG_VALUE'],
  ])('%o -> %s', (options, code) => {
    expect(() => expressToa(options as never)).toThrow(expect.objectContaining({ code }));
    expect(() => koaToa(options as never)).toThrow(expect.objectContaining({ code }));
  });
});
