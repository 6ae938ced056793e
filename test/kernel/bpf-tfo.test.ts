// Kind 254 on the eBPF backend, as test/kernel/kmod-tfo.test.ts holds the
// module to it. The kernel reads kind 254 + ExID 0xF989 as a TFO cookie only
// in a SYN (tcp_parse_options -> tcp_parse_fastopen_option checks th->syn):
// - in the final ACK it is a TOA whose port is 63881 (host test:
//   test/bpf-lifecycle.test.ts, both lengths);
// - in a SYN that creates the child (TFO), a cookie of 8 or 20 bytes is never
//   an address, while a TOA after the cookie is.
// Guest only: it switches the netns's net.ipv4.tcp_fastopen for a moment.
import fs from 'node:fs';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer, toaOption } from '../support/lb/index.mjs';
import { CLIENT_V4, startServer } from '../spec/behaviour';
import { netstat } from '../spec/kmod';
import { bpfBackend } from '../bpf-support';
import { counterDelta } from '../bpf-suites';

describe('eBPF, kind 254 in a TFO SYN', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let lb: any;
  let tfo = '';
  const backend = bpfBackend('k-tfo');

  beforeAll(async () => {
    expect(process.env.TOA_KERNEL, 'changes a sysctl: run through test/support/guest/matrix.mjs').toBeTruthy();
    lb = await createLoadBalancer();
    await backend.enable({ ipv4Kinds: [254], ipv6Kinds: [254], trusted: [] });
    tfo = fs.readFileSync('/proc/sys/net/ipv4/tcp_fastopen', 'utf8').trim();
  }, 60000);

  afterAll(async () => {
    if (tfo) fs.writeFileSync('/proc/sys/net/ipv4/tcp_fastopen', tfo);
    await lb?.close();
    await backend.disable();
  });

  it('a cookie of 8 or 20 bytes never yields an address; a TOA after the cookie does', async () => {
    // server TFO on, no cookie required, no TCP_FASTOPEN sockopt needed: the
    // child is created from the SYN (tcp_try_fastopen)
    fs.writeFileSync('/proc/sys/net/ipv4/tcp_fastopen', `${0x1 | 0x2 | 0x200 | 0x400}`);
    const srv = await startServer('::');
    try {
      const cookie8 = Buffer.from([1, 1, 254, 8, 0xf9, 0x89, 198, 51, 100, 9, 1, 1]);
      const cookie20 = Buffer.from([254, 20, 0xf9, 0x89, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
      const toaSyn = Buffer.concat([Buffer.from([254, 4, 0xf9, 0x89]), toaOption({ kind: 254, address: CLIENT_V4, port: 4321 })]);
      const before = await backend.sandbox().counters();
      const fastOpen = netstat('TCPFastOpenPassive');
      const res = await lb.craft([cookie8, cookie20, toaSyn].map((o) => ({ port: srv.port, synOptions: o, keepOpen: true })), { timeoutMs: 5000 });
      await srv.waitFor(3);
      expect(netstat('TCPFastOpenPassive') - fastOpen).toBe(3); // children really made from the SYNs
      const by = new Map(srv.seen.map((s) => [s.info.proxyPort, s]));
      for (const r of res.slice(0, 2)) {
        const s = by.get(r.source.port)!;
        expect(s.info.present).toBe(false);
        expect(s.remoteAddress).toBe(`::ffff:${r.source.address}`);
      }
      const t = by.get(res[2].source.port)!;
      expect(t.remoteAddress).toBe(`::ffff:${CLIENT_V4}`);
      expect(t.info.optionKind).toBe(254);
      const d = counterDelta(before, await backend.sandbox().counters());
      expect([d.syn_recv_sock_toa, d.syn_recv_sock_no_toa]).toEqual([1, 2]);
    } finally {
      fs.writeFileSync('/proc/sys/net/ipv4/tcp_fastopen', tfo);
      await srv.close();
    }
  }, 30000);
});
