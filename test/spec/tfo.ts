// Kind 254 and TCP Fast Open, one case set for every backend (kernel module,
// eBPF). Kind 254 is a TOA kind (LVS/DPVS) and RFC 7413's experimental TFO
// option (ExID 0xF989); the kernel reads it as a TFO cookie only in a SYN
// (tcp_parse_options -> tcp_parse_fastopen_option checks th->syn), so:
// - in the final ACK, a kind-254 TOA whose port is 63881 (0xF989) is a
//   client, of either length;
// - in a SYN that creates the child (TFO), a cookie of 8 or 20 bytes is never
//   an address;
// - a TFO SYN carrying a TOA after its cookie: the child is made from that
//   SYN, the SYN is what the backend reads, and its TOA is adopted
//   (kmod/README.md, bpf/README.md).
// Guest only: it switches the netns's net.ipv4.tcp_fastopen for a moment.
import fs from 'node:fs';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer, toaOption } from '../support/lb/index.mjs';
import { CLIENT_V4, CLIENT_V6, startServer } from './behaviour';
import type { FuzzBackend } from './fuzz';
import { kernelTrouble, netstat } from './kmod';

const SYSCTL = '/proc/sys/net/ipv4/tcp_fastopen';
// server TFO on (0x2), no cookie required (0x200), no TCP_FASTOPEN sockopt
// needed (0x400): the child is created from the SYN (tcp_try_fastopen)
const TFO_SERVER = 0x1 | 0x2 | 0x200 | 0x400;

export function tfoSuite(backend: FuzzBackend) {
  describe(`kind 254 and TCP Fast Open, ${backend.name}`, () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    let lb: any;
    let tfo = '';

    beforeAll(async () => {
      expect(process.env.TOA_KERNEL, 'changes a sysctl: run through test/support/guest/matrix.mjs').toBeTruthy();
      lb = await createLoadBalancer();
      await backend.enable({ ipv4Kinds: [254], ipv6Kinds: [254], trusted: [], ports: [] });
      tfo = fs.readFileSync(SYSCTL, 'utf8').trim();
    }, 60000);

    afterAll(async () => {
      if (tfo) fs.writeFileSync(SYSCTL, tfo);
      await lb?.close();
      await backend.disable();
    });

    // one crafted batch for all cases: each craft costs guest time under TCG
    it('port 63881 in the final ACK is adopted (8 and 20 bytes); a TFO SYN cookie (8 and 20 bytes) never yields an address; a TOA after the cookie does', async () => {
      // before listen(): 0x400 sizes a listener's TFO queue there (inet_listen)
      fs.writeFileSync(SYSCTL, `${TFO_SERVER}`);
      const srv4 = await startServer('0.0.0.0');
      const srv6 = await startServer('::');
      try {
        const ack4 = toaOption({ kind: 254, address: CLIENT_V4, port: 63881 });
        const ack6 = toaOption({ kind: 254, address: CLIENT_V6, port: 63881 });
        const cookie8 = Buffer.from([1, 1, 254, 8, 0xf9, 0x89, 198, 51, 100, 9, 1, 1]);
        const cookie20 = Buffer.from([254, 20, 0xf9, 0x89, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        const toaSyn = Buffer.concat([Buffer.from([254, 4, 0xf9, 0x89]), toaOption({ kind: 254, address: CLIENT_V4, port: 4321 })]);
        const before = await backend.counters();
        const fastOpen = netstat('TCPFastOpenPassive');
        const [r4, r6, ...res] = await lb.craft([
          { port: srv4.port, ackOptions: ack4, dataOptions: ack4, keepOpen: true },
          { port: srv6.port, family: 6, ackOptions: ack6, dataOptions: ack6, keepOpen: true },
          ...[cookie8, cookie20, toaSyn].map((o) => ({ port: srv6.port, synOptions: o, keepOpen: true })),
        ], { timeoutMs: 5000 });
        expect([r4.connected, r6.connected], 'port-63881 handshakes').toEqual([true, true]);
        await srv4.waitFor(1);
        await srv6.waitFor(4);
        // children really made from the three SYNs, and only from them
        expect(netstat('TCPFastOpenPassive') - fastOpen).toBe(3);

        expect(srv4.seen[0].remoteAddress).toBe(CLIENT_V4);
        expect(srv4.seen[0].remotePort).toBe(63881);
        expect(srv4.seen[0].info.optionKind).toBe(254);
        const by = new Map(srv6.seen.map((s) => [s.info.proxyPort, s]));
        const a6 = by.get(r6.source.port)!;
        expect(a6.remoteAddress, '20-byte TOA of port 63881 in the ACK').toBe(CLIENT_V6);
        expect(a6.remotePort).toBe(63881);
        expect(a6.info.optionKind).toBe(254);
        for (const r of res.slice(0, 2)) {
          const s = by.get(r.source.port)!;
          expect(s.info.present, `TFO cookie from port ${r.source.port}`).toBe(false);
          expect(s.remoteAddress).toBe(`::ffff:${r.source.address}`);
        }
        const t = by.get(res[2].source.port)!;
        expect(t.remoteAddress, 'TOA after a TFO cookie').toBe(`::ffff:${CLIENT_V4}`);
        expect(t.info.optionKind).toBe(254);

        const after = await backend.counters();
        const d = (k: string) => after[k] - (before[k] ?? 0);
        expect([d('syn_recv_sock_toa'), d('syn_recv_sock_no_toa')]).toEqual([3, 2]);
      } finally {
        fs.writeFileSync(SYSCTL, tfo);
        await srv4.close();
        await srv6.close();
      }
    }, 30000);

    it('leaves no trouble in the kernel log', () => {
      expect(kernelTrouble()).toEqual([]);
    });
  });
}
