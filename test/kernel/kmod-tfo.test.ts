// Kind 254 is both a TOA kind (LVS/DPVS) and RFC 7413's experimental TCP Fast
// Open option (ExID 0xF989). The kernel reads it as a TFO cookie only in a SYN
// (tcp_parse_options -> tcp_parse_fastopen_option checks th->syn), so:
// - in the final ACK, a kind-254 TOA whose port is 63881 (0xF989) is a client;
// - in a SYN that creates the child (TFO), a kind-254 cookie of any length is
//   never an address;
// - a TFO SYN that carries a TOA option: the child is made from that SYN, the
//   SYN is what toa.ko reads, and its TOA is adopted (kmod/README.md).
import fs from 'node:fs';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer, toaOption } from '../support/lb/index.mjs';
import { CLIENT_V4, startServer } from '../spec/behaviour';
import { delta, insmod, kernelTrouble, loaded, netstat, rmmod, stats } from '../spec/kmod';

describe('kind 254: TFO cookie only in a SYN', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let lb: any;
  let tfo = '';
  beforeAll(async () => {
    if (loaded()) rmmod();
    insmod({ ipv4Kinds: [254], ipv6Kinds: [254] });
    lb = await createLoadBalancer();
    tfo = fs.readFileSync('/proc/sys/net/ipv4/tcp_fastopen', 'utf8').trim();
  }, 60000);
  afterAll(async () => {
    if (tfo) fs.writeFileSync('/proc/sys/net/ipv4/tcp_fastopen', tfo);
    await lb?.close();
    if (loaded()) rmmod();
  });

  it('a kind-254 TOA with client port 63881 in the final ACK is adopted', async () => {
    const srv = await startServer('0.0.0.0');
    try {
      const opt = toaOption({ kind: 254, address: CLIENT_V4, port: 63881 });
      const [r] = await lb.craft([{ port: srv.port, ackOptions: opt, dataOptions: opt, keepOpen: true }], { timeoutMs: 5000 });
      expect(r.connected).toBe(true);
      await srv.waitFor(1);
      expect(srv.seen[0].remoteAddress).toBe(CLIENT_V4);
      expect(srv.seen[0].remotePort).toBe(63881);
      expect(srv.seen[0].info.optionKind).toBe(254);
    } finally {
      await srv.close();
    }
  }, 30000);

  it('a TFO SYN with a kind-254 cookie (8 and 20 bytes) never yields an address; a TOA in a TFO SYN is adopted', async () => {
    // server TFO on, no cookie required, no TCP_FASTOPEN sockopt needed: the
    // child is created from the SYN (tcp_try_fastopen)
    fs.writeFileSync('/proc/sys/net/ipv4/tcp_fastopen', `${0x1 | 0x2 | 0x200 | 0x400}`);
    const srv = await startServer('::');
    try {
      const cookie8 = Buffer.from([1, 1, 254, 8, 0xf9, 0x89, 198, 51, 100, 9, 1, 1]);
      const cookie20 = Buffer.from([254, 20, 0xf9, 0x89, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
      const toaSyn = Buffer.concat([Buffer.from([254, 4, 0xf9, 0x89]), toaOption({ kind: 254, address: CLIENT_V4, port: 4321 })]);
      const before = stats();
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
      const d = delta(before, stats());
      expect(d.syn_recv_sock_toa).toBe(1);
      expect(d.syn_recv_sock_no_toa).toBe(2);
    } finally {
      fs.writeFileSync('/proc/sys/net/ipv4/tcp_fastopen', tfo);
      await srv.close();
    }
  }, 30000);

  it('leaves no trouble in the kernel log', () => {
    expect(kernelTrouble()).toEqual([]);
  });
});
