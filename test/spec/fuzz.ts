// The malformed-option fuzz, one runner for every backend (kernel module,
// eBPF): handshakes whose completing segment carries hostile option bytes
// (test/spec/options.ts). Whatever the bytes: no oops, an address is adopted
// exactly when the reference walker finds a well-formed TOA, and the
// backend's counters add up to what the server accepted.
import net from 'node:net';
import os from 'node:os';
import { once } from 'node:events';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer } from '../support/lb/index.mjs';
import { getToaInfo } from '../../src/index';
import type { Backend } from './behaviour';
import { hostileOptions, authWalkMayDrop, kernelDropsBadOptionLengths, parseOptions, rng, type Kinds } from './options';
import { kernelTrouble } from './kmod';

export interface FuzzBackend extends Backend {
  /** syn_recv_sock_toa, syn_recv_sock_no_toa, malformed (summed over CPUs) */
  counters(): Promise<Record<string, number>>;
}

interface Seen { remoteAddress?: string; remotePort?: number; info?: ReturnType<typeof getToaInfo> }

export function fuzzSuite(backend: FuzzBackend, { n, seed, batch = 500 }: { n: number; seed: number; batch?: number }) {
  const kinds: Kinds = { v4: [200, 254], v6: [253] };
  // there, a segment with a bad length somewhere may never reach the
  // backend; the crafter's next, option-less segment completes the handshake
  const mayDrop = kernelDropsBadOptionLengths(os.release());

  describe(`malformed-option fuzz, ${backend.name} (${n} handshakes, seed ${seed})`, () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    let lb: any;
    let server: net.Server;
    let port = 0;
    let accepted = 0;
    const seen = new Map<string, Seen>();
    const errors: string[] = [];

    beforeAll(async () => {
      lb = await createLoadBalancer();
      await backend.enable({ ipv4Kinds: kinds.v4, ipv6Kinds: kinds.v6, trusted: [], ports: [] });
      server = net.createServer((s) => {
        accepted++;
        const rec: Seen = {};
        try {
          rec.remoteAddress = s.remoteAddress;
          rec.remotePort = s.remotePort;
          rec.info = getToaInfo(s);
          seen.set(`${rec.info.proxy.address}|${rec.info.proxy.port}`, rec);
        } catch (e) {
          errors.push((e as { code?: string }).code ?? String(e));
        }
        s.on('error', () => {});
        s.destroy();
      });
      server.listen({ host: '0.0.0.0', port: 0 });
      await once(server, 'listening');
      port = (server.address() as net.AddressInfo).port;
    }, 60000);

    afterAll(async () => {
      await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
      await lb?.close();
      await backend.disable();
    });

    it('adopts exactly the well-formed options, never oopses, counts everything', async () => {
      const r = rng(seed);
      const before = await backend.counters();
      // only what this run adds: a host's log may hold boot-time warnings
      const troubleBefore = kernelTrouble().length;
      let expectFound = 0;
      let refMalformed = 0;
      let connected = 0;
      const mismatches: string[] = [];

      for (let done = 0; done < n; done += batch) {
        const opts = Array.from({ length: Math.min(batch, n - done) }, () => hostileOptions(r, kinds));
        // same bytes on ACK and data: whichever segment completes the handshake carries them
        const results = await lb.craft(opts.map((o) => ({ port, ackOptions: o, dataOptions: o, keepOpen: true })),
          { timeoutMs: 5000 });
        const want = results.filter((x: { connected: boolean }) => x.connected).length;
        const deadline = Date.now() + 15000;
        while (accepted < connected + want && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
        results.forEach((res: { source: { address: string; port: number } }, i: number) => {
          const key = `${res.source.address}|${res.source.port}`;
          const rec = seen.get(key);
          seen.delete(key);
          if (!rec) return; // never established (some kernels drop bad-length segments)
          connected++;
          // not a SYN: kind 254 / 0xF989 here is a TOA with port 63881
          const parsed = parseOptions(opts[i], kinds, false);
          const info = rec.info!;
          // a dropped segment shows as "no option"; an adopted address must
          // always be the first well-formed match
          const dropped = mayDrop && authWalkMayDrop(opts[i]) && !info.present;
          // a bogus address is refused like no option at all
          const ref = dropped || (parsed.result === 'found' && parsed.bogus) ? { result: 'none' as const } : parsed;
          if (ref.result === 'found') expectFound++;
          if (parsed.result === 'malformed') refMalformed++;
          const ok = ref.result === 'found'
            ? info.present && info.optionKind === ref.kind && info.address === ref.address && info.port === ref.port
              && (ref.family === 6 ? rec.remoteAddress === res.source.address : rec.remoteAddress === ref.address)
            : !info.present && rec.remoteAddress === res.source.address && rec.remotePort === res.source.port
              && info.address === res.source.address;
          if (!ok && mismatches.length < 20) {
            mismatches.push(`${opts[i].toString('hex')}: ref=${JSON.stringify(ref)} got remote=${rec.remoteAddress}:${rec.remotePort} info=${JSON.stringify(info)}`);
          }
        });
        expect(mismatches).toEqual([]);
      }

      // every established child went through the handshake hook exactly once
      const delta = async () => {
        const a = await backend.counters();
        return Object.fromEntries(Object.keys(a).map((k) => [k, a[k] - (before[k] ?? 0)]));
      };
      let d = await delta();
      const deadline = Date.now() + 10000;
      while (d.syn_recv_sock_toa + d.syn_recv_sock_no_toa < accepted && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 100));
        d = await delta();
      }
      console.log(`fuzz (${backend.name}): ${n} crafted, ${accepted} accepted, ${connected} matched, ${expectFound} with TOA, ${refMalformed} malformed (kernel may drop: ${mayDrop}); counters ${JSON.stringify(d)}`);
      expect(errors).toEqual([]);
      expect(connected).toBe(accepted);
      expect(connected).toBeGreaterThan(n / 2);
      expect(d.syn_recv_sock_toa + d.syn_recv_sock_no_toa).toBe(accepted);
      expect(d.syn_recv_sock_toa).toBe(expectFound);
      // where the kernel may drop, a malformed list that did reach us still counts
      if (mayDrop) expect(d.malformed).toBeLessThanOrEqual(refMalformed);
      else expect(d.malformed).toBe(refMalformed);
      expect(kernelTrouble().slice(troubleBefore)).toEqual([]);
    }, 3_600_000);
  });
}
