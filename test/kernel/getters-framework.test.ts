// End to end in a guest: Fastify with node-toa/fastify behind the LB
// emulator, toa.ko the provider (the host suite covers the eBPF backend:
// test/frameworks.test.ts). Fastify's own request.ip shows the TOA client,
// request.toa says where it came from, and a forged option from a direct
// client is refused with the configured status. node-toa/metrics reads the
// module's counters.
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import fastifyToa from '../../src/fastify';
import { snapshot } from '../../src/metrics';
import { kmodBackend } from '../spec/kmod';
// @ts-expect-error plain ESM helper without types
import { createLoadBalancer } from '../support/lb/index.mjs';

interface Lb {
  balancerAddress(f: 4 | 6): string;
  connect(o: object): Promise<{ send(d: string): Promise<number>; recvAll(): Promise<Buffer>; close(): Promise<void> }>;
  craft(specs: object[]): Promise<{ reply: Buffer }[]>;
  close(): Promise<void>;
}

let lb: Lb;
const app = Fastify();
let port: number;
// this process's counts when the file starts: other files count too
let processAtStart: Awaited<ReturnType<typeof snapshot>>['process'];

beforeAll(async () => {
  lb = await createLoadBalancer();
  await kmodBackend.enable({ ipv4Kinds: [200], ipv6Kinds: [253], trusted: [`${lb.balancerAddress(4)}/32`, `${lb.balancerAddress(6)}/128`] });
  processAtStart = (await snapshot()).process;
  await app.register(fastifyToa, { reject: ['rejected'], rejectStatus: 451 });
  app.get('/', async (request) => ({ ip: request.ip, toa: request.toa }));
  await app.listen({ port: 0, host: '::' });
  port = (app.server.address() as AddressInfo).port;
}, 60_000);
afterAll(async () => {
  await app.close();
  await kmodBackend.disable();
  await lb?.close();
});

async function get(toa: object, family: 4 | 6) {
  const conn = await lb.connect({ port, family, toa, placement: 'ack' });
  await conn.send('GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
  const text = (await conn.recvAll()).toString();
  await conn.close();
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]), body: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) };
}

it('IPv4, NAT64 and IPv6 clients: request.ip is the client, request.toa names the balancer', async () => {
  const v4 = await get({ kind: 200, address: '198.51.100.7', port: 51000 }, 4);
  expect(v4.status).toBe(200);
  expect(v4.body).toEqual({
    ip: '::ffff:198.51.100.7',
    toa: { address: '::ffff:198.51.100.7', port: 51000, family: 'IPv6', source: 'toa', trusted: true, optionKind: 200,
      proxy: { address: `::ffff:${lb.balancerAddress(4)}`, port: expect.any(Number), family: 'IPv6' } },
  });
  const nat64 = await get({ kind: 253, address: '2001:db8:cafe::7', port: 52000 }, 4);
  expect(nat64.body).toMatchObject({ ip: '2001:db8:cafe::7', toa: { address: '2001:db8:cafe::7', source: 'toa', trusted: true, optionKind: 253 } });
  const v6 = await get({ kind: 253, address: '2001:db8:beef::42', port: 53000 }, 6);
  expect(v6.body).toMatchObject({ ip: '2001:db8:beef::42', toa: { address: '2001:db8:beef::42', proxy: { address: lb.balancerAddress(6) } } });
});

it('a direct client forging an option is refused with 451', async () => {
  const [r] = await lb.craft([{ port, ackOptions: Buffer.from([200, 8, 0x1f, 0x90, 203, 0, 113, 250]), data: 'GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', keepOpen: true }]);
  expect(r.reply.toString()).toMatch(/^HTTP\/1\.1 451 /);
});

it('node-toa/metrics: the module\'s counters and this process\'s per-source counts', async () => {
  const before = await snapshot();
  expect(before.kernel.provider).toBe('node-toa-kmod');
  await get({ kind: 200, address: '198.51.100.9', port: 51009 }, 4);
  const after = await snapshot();
  expect(after.kernel.counters.syn_recv_sock_toa - before.kernel.counters.syn_recv_sock_toa).toBe(1);
  expect(after.process.toa - before.process.toa).toBe(1);
  // The forged option of the test before: ignored by the module, counted here.
  expect(after.kernel.counters.untrusted).toBeGreaterThanOrEqual(1);
  expect(after.process.rejected - processAtStart.rejected).toBe(1);
});
