// Test suites of the eBPF backend, shared by the host tests (test/bpf-*.test.ts,
// this machine's kernel) and the guest tests (test/kernel/bpf-*.test.ts, the
// Debian kernel matrix). Each suite attaches only to a cgroup it creates.
import net from 'node:net';
import os from 'node:os';
import { once } from 'node:events';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer, ipv6Bytes, toaOption } from './support/lb/index.mjs';
import { CLIENT_PORT, CLIENT_V4, CLIENT_V6 } from './spec/behaviour';
import { hostileOptions, parseOptions, rng, type Kinds } from './spec/options';
import { Sandbox, bpfBackend, requireRoot } from './bpf-support';
import { Probe, decodeInfo, decodeNat64, type Answer } from './bpf-probe';
import type { Counters } from '../src/bpf/index';
import { getToaInfo } from '../src/index';

const AF_INET = 2;
const AF_INET6 = 10;
const F_PRESENT = 1;
const F_NAT64 = 2;
const F_TRUSTED = 4;
const F_UNTRUSTED = 8;

export function kernelAtLeast(major: number, minor: number): boolean {
  const [ma, mi] = os.release().split('.').map((x) => parseInt(x, 10));
  return ma > major || (ma === major && mi >= minor);
}

/**
 * Before 5.18 a cgroup getsockopt program can only clear the error or cause
 * EFAULT (bpf/toa.bpf.c, sockopt_fail): EINVAL and ENOTCONN stay the
 * kernel's own ENOPROTOOPT there.
 */
export function bpfErrno(code: string): string {
  return kernelAtLeast(5, 18) || code === 'EFAULT' ? code : 'ENOPROTOOPT';
}

export function counterDelta(a: Counters, b: Counters): Counters {
  return Object.fromEntries(Object.entries(b).map(([k, v]) => [k, v - a[k as keyof Counters]])) as Counters;
}

const errOf = (a: Answer) => ('err' in a ? a.err : `answered ${a.hex}`);
const hexOf = (a: Answer) => {
  if (!('hex' in a)) throw new Error(`expected an answer, got ${a.err}`);
  return a.hex;
};
const v6hex = (addr: string) => (ipv6Bytes(addr) as Buffer).toString('hex');
const v4hex = (addr: string) => Buffer.from(addr.split('.').map(Number)).toString('hex').padEnd(32, '0');

/** Raw ABI seen by a server process in the attached cgroup, and by one outside it. */
export function abiSuite(tag: string) {
  describe('raw getsockopt / getpeername ABI', () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    let lb: any;
    let box: Sandbox;
    const probes: Probe[] = [];

    beforeAll(async () => {
      requireRoot();
      box = new Sandbox(tag);
      await box.attach();
      lb = await createLoadBalancer();
    }, 60000);

    afterAll(async () => {
      probes.forEach((p) => p.stop());
      await lb?.close();
      await box?.cleanup();
    });

    async function serve(host: '0.0.0.0' | '::', inside = true, reps = 0) {
      const r = await Probe.start(host, 1, { cgroup: inside ? box.cgroup : undefined, reps });
      probes.push(r.probe);
      return r;
    }

    it('NAT64 client on an AF_INET socket: 4096 answers the client, getpeername the balancer', async () => {
      const { probe, hello } = await serve('0.0.0.0');
      const c = await lb.connect({ port: hello.port, family: 4, toa: { kind: 253, address: CLIENT_V6, port: CLIENT_PORT }, placement: 'ack' });
      const r = await probe.conn();
      await c.close().catch(() => undefined);
      expect(r.peer).toEqual([lb.balancerAddress(4), c.localPort]);
      for (const a of [r.lookup, r.lookupBig]) {
        expect(decodeNat64(hexOf(a))).toEqual({ length: 20, addrHex: v6hex(CLIENT_V6), port: CLIENT_PORT, padding: '0000' });
      }
      expect(errOf(r.lookupShort)).toBe(bpfErrno('EINVAL'));
      expect(errOf(r.infoShort)).toBe(bpfErrno('EINVAL'));
      const info = decodeInfo(hexOf(r.info));
      expect(decodeInfo(hexOf(r.infoBig))).toEqual(info);
      expect(info).toMatchObject({
        length: 56, version: 1, flags: F_PRESENT | F_NAT64, sockFamily: AF_INET, realFamily: AF_INET6,
        realPort: CLIENT_PORT, realHex: v6hex(CLIENT_V6), proxyFamily: AF_INET, proxyPort: c.localPort,
        proxyHex: v4hex(lb.balancerAddress(4)), optKind: 253, reserved: '0000000000',
      });
      // not connected: listening and UDP sockets, checked after the buffer size as in the kmod
      expect(errOf(hello.listen4096)).toBe(bpfErrno('ENOTCONN'));
      expect(errOf(hello.listen4097)).toBe(bpfErrno('ENOTCONN'));
      expect(errOf(hello.udp4096)).toBe(bpfErrno('ENOTCONN'));
      expect(errOf(hello.udp4097)).toBe(bpfErrno('ENOTCONN'));
      expect(errOf(hello.udp4096short)).toBe(bpfErrno('EINVAL'));
    }, 30000);

    it('IPv4 client on a dual-stack socket: getpeername ::ffff:client, 4096 EFAULT, 4097 PRESENT', async () => {
      const { probe, hello } = await serve('::');
      const c = await lb.connect({ port: hello.port, family: 4, toa: { kind: 200, address: CLIENT_V4, port: CLIENT_PORT }, placement: 'ack' });
      const r = await probe.conn();
      await c.close().catch(() => undefined);
      expect(r.peer).toEqual([`::ffff:${CLIENT_V4}`, CLIENT_PORT]);
      expect(errOf(r.lookup)).toBe('EFAULT');
      expect(decodeInfo(hexOf(r.info))).toMatchObject({
        flags: F_PRESENT, sockFamily: AF_INET6, realFamily: AF_INET, realPort: CLIENT_PORT, realHex: v4hex(CLIENT_V4),
        proxyFamily: AF_INET, proxyPort: c.localPort, proxyHex: v4hex(lb.balancerAddress(4)), optKind: 200,
      });
    }, 30000);

    it('leaves every other getsockopt exactly as outside the cgroup, at small cost', async () => {
      const reps = 20000;
      const outside = await serve('::', false, reps);
      const inside = await serve('::', true, reps);
      const answers = [];
      for (const s of [outside, inside]) {
        const c = await lb.connect({ port: s.hello.port, family: 4, toa: { kind: 200, address: CLIENT_V4, port: CLIENT_PORT }, placement: 'ack' });
        answers.push(await s.probe.conn());
        await c.close().catch(() => undefined);
      }
      const [out, inn] = answers;
      expect(errOf(out.lookup)).toBe('ENOPROTOOPT');
      expect(errOf(out.info)).toBe('ENOPROTOOPT');
      expect(out.peer[0]).toBe(`::ffff:${lb.balancerAddress(4)}`);
      expect(inn.peer).toEqual([`::ffff:${CLIENT_V4}`, CLIENT_PORT]);
      expect(inn.pass).toEqual(out.pass);
      expect(Object.values(inn.pass).filter((a) => 'err' in a).map(errOf)).toEqual(
        ['ENOPROTOOPT', 'ENOPROTOOPT', 'ENOPROTOOPT', 'ENOPROTOOPT', 'ENOPROTOOPT']);
      console.log(`getsockopt(TCP_NODELAY): ${out.nsPerGetsockopt.toFixed(0)} ns outside, ${inn.nsPerGetsockopt.toFixed(0)} ns in the attached cgroup`);
      // a generous bound: 2 shared cores, python in the loop
      expect(inn.nsPerGetsockopt).toBeLessThan(out.nsPerGetsockopt * 3 + 2000);
    }, 60000);

    it('counts like the kmod: handshakes, lookups, untrusted and malformed options', async () => {
      const before = await box.counters();
      // IPv4 TOA: accept() and getpeername() rewrite (ok 2), 4096 twice mismatched (EFAULT)
      {
        const { probe, hello } = await serve('0.0.0.0');
        const c = await lb.connect({ port: hello.port, family: 4, toa: { kind: 200, address: CLIENT_V4, port: CLIENT_PORT }, placement: 'ack' });
        await probe.conn();
        await c.close().catch(() => undefined);
      }
      // no option: 4096 twice empty
      {
        const { probe, hello } = await serve('0.0.0.0');
        const c = await lb.connect({ port: hello.port, family: 4 });
        await probe.conn();
        await c.close().catch(() => undefined);
      }
      // untrusted balancer: option ignored, 4096 twice empty
      await box.attach({ trusted: ['192.0.2.0/24'] });
      {
        const { probe, hello } = await serve('0.0.0.0');
        const c = await lb.connect({ port: hello.port, family: 4, toa: { kind: 200, address: CLIENT_V4, port: CLIENT_PORT }, placement: 'ack' });
        const r = await probe.conn();
        await c.close().catch(() => undefined);
        expect(r.peer).toEqual([lb.balancerAddress(4), c.localPort]);
        expect(decodeInfo(hexOf(r.info))).toMatchObject({ flags: F_UNTRUSTED, optKind: 200, realHex: v4hex(lb.balancerAddress(4)) });
      }
      await box.attach({ trusted: [] });
      // malformed: a length byte of 1 in the completing ACK
      {
        const { probe, hello } = await serve('0.0.0.0');
        const [res] = await lb.craft([{ port: hello.port, ackOptions: Buffer.from([1, 1, 200, 1]), dataOptions: Buffer.from([1, 1, 200, 1]) }]);
        if (res.connected) await probe.conn();
        const d = counterDelta(before, await box.counters());
        expect(d).toEqual({
          syn_recv_sock_toa: 1,
          syn_recv_sock_no_toa: res.connected ? 3 : 2,
          getname_toa_ok: 2,
          getname_toa_mismatch: 2,
          getname_toa_empty: res.connected ? 6 : 4,
          untrusted: 1,
          malformed: res.connected ? 1 : 0,
        });
      }
    }, 60000);
  });
}

/**
 * Since TCP-AO (6.7) tcp_inbound_hash walks every option of a segment and
 * drops it at the first invalid length, before any TOA code runs.
 */
const mayDrop = kernelAtLeast(6, 7);

/** Does a full walk (not stopping at a match) meet a length the kernel rejects? */
export function badLengthAnywhere(opt: Uint8Array): boolean {
  for (let i = 0; i < opt.length;) {
    if (opt[i] === 0) return false;
    if (opt[i] === 1) { i++; continue; }
    if (opt.length - i < 2 || opt[i + 1] < 2 || opt[i + 1] > opt.length - i) return true;
    i += opt[i + 1];
  }
  return false;
}

/** Hostile option bytes in the completing segment, checked against the reference walker. */
export function fuzzSuite(tag: string, n: number, seed = 0x70b) {
  const kinds: Kinds = { v4: [200, 254], v6: [253] };
  const backend = bpfBackend(tag);
  describe(`malformed-option fuzz (${n} handshakes, seed ${seed})`, () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    let lb: any;
    let server: net.Server;
    let port = 0;
    let accepted = 0;
    const seen = new Map<string, { remoteAddress?: string; remotePort?: number; info?: ReturnType<typeof getToaInfo> }>();
    const errors: string[] = [];

    beforeAll(async () => {
      lb = await createLoadBalancer();
      await backend.enable({ ipv4Kinds: kinds.v4, ipv6Kinds: kinds.v6, trusted: [] });
      server = net.createServer((s) => {
        accepted++;
        try {
          const info = getToaInfo(s);
          seen.set(`${info.proxy.address}|${info.proxy.port}`, { remoteAddress: s.remoteAddress, remotePort: s.remotePort, info });
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

    it('adopts exactly the well-formed options and counts everything', async () => {
      const r = rng(seed);
      const box = backend.sandbox();
      const before = await box.counters();
      let connected = 0;
      let adopted = 0;
      let expectFound = 0;
      let expectMalformed = 0;
      const mismatches: string[] = [];
      const BATCH = 250;
      for (let done = 0; done < n; done += BATCH) {
        const opts = Array.from({ length: Math.min(BATCH, n - done) }, () => hostileOptions(r, kinds));
        const results = await lb.craft(opts.map((o) => ({ port, ackOptions: o, dataOptions: o, keepOpen: true })), { timeoutMs: 5000 });
        const want = results.filter((x: { connected: boolean }) => x.connected).length;
        const deadline = Date.now() + 15000;
        while (accepted < connected + want && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
        results.forEach((res: { source: { address: string; port: number } }, i: number) => {
          const key = `${res.source.address}|${res.source.port}`;
          const rec = seen.get(key);
          seen.delete(key);
          if (!rec) return; // never established: some kernels drop bad-length segments
          connected++;
          const ref = parseOptions(opts[i], kinds);
          if (ref.result === 'found') expectFound++;
          if (ref.result === 'malformed') expectMalformed++;
          const info = rec.info!;
          if (info.present) adopted++;
          const none = !info.present && rec.remoteAddress === res.source.address && rec.remotePort === res.source.port
            && info.address === res.source.address;
          const found = ref.result === 'found' && info.present && info.optionKind === ref.kind && info.address === ref.address
            && info.port === ref.port && (ref.family === 6 ? rec.remoteAddress === res.source.address : rec.remoteAddress === ref.address);
          // a kernel that drops the optioned segments lets the crafter's bare
          // retransmitted ACK complete the handshake: no TOA, never another one
          const ok = ref.result === 'found' ? found || (mayDrop && badLengthAnywhere(opts[i]) && none) : none;
          if (!ok && mismatches.length < 20) {
            mismatches.push(`${opts[i].toString('hex')}: ref=${JSON.stringify(ref)} got remote=${rec.remoteAddress}:${rec.remotePort} info=${JSON.stringify(info)}`);
          }
        });
        expect(mismatches).toEqual([]);
      }
      let d = counterDelta(before, await box.counters());
      const deadline = Date.now() + 10000;
      while (d.syn_recv_sock_toa + d.syn_recv_sock_no_toa < accepted && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 100));
        d = counterDelta(before, await box.counters());
      }
      console.log(`bpf fuzz: ${n} crafted, ${accepted} accepted, ${connected} matched, ${expectFound} with TOA, ${expectMalformed} malformed; counters ${JSON.stringify(d)}`);
      expect(errors).toEqual([]);
      expect(connected).toBe(accepted);
      expect(connected).toBeGreaterThan(n / 2);
      expect(d.syn_recv_sock_toa + d.syn_recv_sock_no_toa).toBe(accepted);
      expect(d.syn_recv_sock_toa).toBe(adopted);
      if (mayDrop) {
        expect(d.malformed).toBeLessThanOrEqual(expectMalformed);
      } else {
        expect(adopted).toBe(expectFound);
        expect(d.malformed).toBe(expectMalformed);
      }
    }, 3_600_000);
  });
}

export { F_NAT64, F_PRESENT, F_TRUSTED, toaOption };
