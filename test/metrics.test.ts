// node-toa/metrics with a real provider (the eBPF backend in a cgroup this
// test made, clients through the LB emulator) and a real prom-client
// registry: the scrape shows the kernel counters and this process's
// per-source counts, and the plain snapshot says the same.
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { lookup } from '../src/index';
import { register, snapshot } from '../src/metrics';
import { bpfBackend } from './bpf-support';
// @ts-expect-error plain ESM helper without types
import { createLoadBalancer } from './support/lb/index.mjs';

const backend = bpfBackend('metrics');
let lb: {
  balancerAddress(f: 4 | 6): string;
  connect(o: object): Promise<{ send(d: string): Promise<number>; recvAll(): Promise<Buffer>; close(): Promise<void> }>;
  craft(specs: object[]): Promise<unknown[]>;
  close(): Promise<void>;
};
let server: net.Server;
let port: number;
const sources: string[] = [];

beforeAll(async () => {
  lb = await createLoadBalancer();
  await backend.enable({ trusted: [`${lb.balancerAddress(4)}/32`], ipv4Kinds: [200], ipv6Kinds: [253] });
  server = net.createServer((s) => {
    sources.push(lookup(s).source);
    s.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '::', r));
  port = (server.address() as AddressInfo).port;
}, 60_000);
afterAll(async () => {
  server?.close();
  await backend.disable();
  await lb?.close();
});

async function through(toa?: object) {
  const conn = await lb.connect({ port, family: 4, toa, placement: toa ? 'ack' : 'none' });
  await conn.send('x');
  await conn.recvAll();
  await conn.close();
}

it('snapshot(): eBPF counters and per-source counts of this process', async () => {
  const pinDir = backend.sandbox().pinDir;
  const before = await snapshot({ pinDir });
  expect(before.kernel.provider).toBe('node-toa-bpf');
  await through({ kind: 200, address: '198.51.100.7', port: 51000 });
  await through({ kind: 200, address: '198.51.100.8', port: 51001 });
  await through();
  // A direct client forging an option: not trusted, counted as rejected.
  await lb.craft([{ port, ackOptions: Buffer.from([200, 8, 0x1f, 0x90, 203, 0, 113, 250]), data: 'x', keepOpen: true }]);
  expect(sources).toEqual(['toa', 'toa', 'peer', 'peer']);
  const after = await snapshot({ pinDir });
  expect(after.process.toa - before.process.toa).toBe(2);
  expect(after.process.peer - before.process.peer).toBe(2);
  expect(after.process.rejected - before.process.rejected).toBe(1);
  expect(after.kernel.counters.syn_recv_sock_toa - before.kernel.counters.syn_recv_sock_toa).toBe(2);
  expect(after.kernel.counters.untrusted - before.kernel.counters.untrusted).toBe(1);
});

it('register(): a prom-client registry scrape shows both families', async () => {
  const registry = new Registry();
  register({ registry, pinDir: backend.sandbox().pinDir });
  const text = await registry.metrics();
  const now = await snapshot({ pinDir: backend.sandbox().pinDir });
  expect(text).toContain('# TYPE node_toa_kernel_counter gauge');
  expect(text).toContain(`node_toa_kernel_counter{provider="node-toa-bpf",counter="syn_recv_sock_toa"} ${now.kernel.counters.syn_recv_sock_toa}`);
  expect(text).toContain(`node_toa_kernel_counter{provider="node-toa-bpf",counter="untrusted"} ${now.kernel.counters.untrusted}`);
  for (const source of ['toa', 'toa-nat64', 'peer', 'proxy-protocol', 'rejected'] as const) {
    expect(text).toContain(`node_toa_connections{source="${source}"} ${now.process[source]}`);
  }
  expect(now.process.toa).toBeGreaterThanOrEqual(2);
});

it('no provider readable: provider none, no kernel series, process counts still there', async () => {
  const registry = new Registry();
  const opts = { registry, pinDir: '/nonexistent/node-toa', statsFile: '/nonexistent/toa_stats' };
  register(opts);
  expect((await snapshot(opts)).kernel).toEqual({ provider: 'none', counters: {} });
  const text = await registry.metrics();
  expect(text).not.toContain('node_toa_kernel_counter{');
  expect(text).toMatch(/node_toa_connections\{source="toa"\} \d+/);
});
