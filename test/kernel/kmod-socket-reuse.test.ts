// Socket memory is reused at once (tcp_sock lives in a SLAB_TYPESAFE_BY_RCU
// cache): an entry must answer only for the socket it was made for. The
// module's test-only `test_skip_destroy` knob (taints the kernel) leaves every
// entry behind as a missed destroy would; then connections without TOA from
// the very same balancer ports reuse those sockets' memory, and none of them
// may report a client. Without the knob, the same churn must end with an
// empty table and alloc == free.
import net from 'node:net';
import { once } from 'node:events';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer, toaOption } from '../support/lb/index.mjs';
import { getToaInfo } from '../../src/index';
import { delta, insmod, kernelTrouble, loaded, rmmod, stats, tableEntries } from '../spec/kmod';

const ROUNDS = Number(process.env.TOA_REUSE_ROUNDS ?? 20);
const PORTS = 64;

interface Seen { remoteAddress?: string; present: boolean; address: string }

describe('reused socket memory never inherits a client', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let lb: any;
  let server: net.Server;
  let port = 0;
  const seen = new Map<string, Seen>();

  // a server per case: a listener that saw TOA holds the module until closed
  async function listen() {
    server = net.createServer((s) => {
      try {
        const i = getToaInfo(s);
        seen.set(`${i.proxy.address}|${i.proxy.port}`, { remoteAddress: s.remoteAddress, present: i.present, address: i.address });
      } catch { /* closed before we looked: nothing learnt */ }
      s.on('error', () => {});
      s.destroy();
    });
    server.listen({ host: '0.0.0.0', port: 0 });
    await once(server, 'listening');
    port = (server.address() as net.AddressInfo).port;
  }
  const closeServer = () => new Promise<void>((r) => (server?.listening ? server.close(() => r()) : r()));

  beforeAll(async () => {
    if (loaded()) rmmod();
    lb = await createLoadBalancer();
  }, 60000);

  afterAll(async () => {
    await closeServer();
    await lb?.close();
    if (loaded()) rmmod();
  });

  async function churn() {
    const src = lb.craftAddresses(4)[0];
    const stale: string[] = [];
    let plainConnected = 0;
    let toaConnected = 0;
    for (let round = 0; round < ROUNDS; round++) {
      // a fresh port block per round: the server never meets its own TIME_WAIT
      const base = 20000 + (round % 300) * PORTS;
      for (const withToa of [true, false]) {
        const specs = Array.from({ length: PORTS }, (_, k) => ({
          port,
          source: { address: src, port: base + k },
          ...(withToa ? { ackOptions: toaOption({ kind: 200, address: `198.51.100.${1 + k}`, port: 7000 + k }) } : {}),
        }));
        const res = await lb.craft(specs, { timeoutMs: 5000 });
        await new Promise((r) => setTimeout(r, 50));
        for (const r of res) {
          const rec = seen.get(`${r.source.address}|${r.source.port}`);
          seen.delete(`${r.source.address}|${r.source.port}`);
          if (!rec) continue;
          if (withToa) { toaConnected++; continue; }
          plainConnected++;
          if (rec.present || rec.remoteAddress !== r.source.address) stale.push(`${r.source.port}: ${rec.remoteAddress} (${rec.address})`);
        }
      }
    }
    return { stale, plainConnected, toaConnected };
  }

  it('with every destroy missed on purpose, no connection without TOA reports a client', async () => {
    insmod({}, ['test_skip_destroy=1']);
    await listen();
    const { stale, plainConnected, toaConnected } = await churn().finally(async () => {
      await closeServer();
      rmmod();
    });
    console.log(`reuse (destroys skipped): ${toaConnected} with TOA, ${plainConnected} without, stale answers ${stale.length}`);
    expect(toaConnected).toBeGreaterThan(ROUNDS * PORTS / 2);
    expect(plainConnected).toBeGreaterThan(ROUNDS * PORTS / 2);
    expect(stale.slice(0, 10)).toEqual([]);
  }, 600_000);

  it('with destroys seen, the same churn leaves an empty table and alloc == free', async () => {
    insmod();
    await listen();
    const before = stats();
    const { stale, toaConnected } = await churn();
    await new Promise((r) => setTimeout(r, 500));
    const d = delta(before, stats());
    expect(stale).toEqual([]);
    expect(d.entry_alloc).toBeGreaterThanOrEqual(toaConnected);
    expect(d.entry_alloc).toBe(d.entry_free);
    expect(tableEntries()).toEqual([]);
    expect(stats().probe_missed).toBe(0);
    await closeServer();
    rmmod();
    expect(kernelTrouble()).toEqual([]);
  }, 600_000);
});
