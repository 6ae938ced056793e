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
// The crafted SYNs use cookies the server never made (it requires none); a
// second case runs the kernel's own Fast Open client (lb.connect fastOpen)
// against a server that requires a valid cookie, in both forms the client
// sends: RFC 7413 kind 34, and kind 254/0xF989, which the client switches to
// after a cookie request got no answer (tcp_rcv_fastopen_synack -> try_exp).
// Guest only: it switches the netns's net.ipv4.tcp_fastopen for a moment.
import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer, toaOption } from '../support/lb/index.mjs';
import { CLIENT_V4, CLIENT_V6, observe, startServer, type Observed } from './behaviour';
import type { FuzzBackend } from './fuzz';
import { kernelTrouble, netstat } from './kmod';

const SYSCTL = '/proc/sys/net/ipv4/tcp_fastopen';
// server TFO on (0x2), no cookie required (0x200), no TCP_FASTOPEN sockopt
// needed (0x400): the child is created from the SYN (tcp_try_fastopen)
const TFO_SERVER = 0x1 | 0x2 | 0x200 | 0x400;
// the same, but a SYN's data is taken only with a valid cookie
const TFO_COOKIE = 0x1 | 0x2 | 0x400;

/** Records each accepted socket with everything it read before the client's FIN. */
async function readingServer() {
  const got: Array<{ seen: Observed; data: string }> = [];
  const server = net.createServer((s) => {
    const seen = observe(s);
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d) => { data += d; });
    s.on('error', () => {});
    s.on('end', () => {
      got.push({ seen, data });
      s.end();
    });
  });
  server.listen({ host: '::', port: 0, ipv6Only: false });
  await once(server, 'listening');
  return { server, got, port: (server.address() as net.AddressInfo).port };
}

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

    // One connection at a time: each one's cookie state comes from the last.
    // ~1 s of guest time (TCG), tcpdump included.
    it('kernel TFO client, cookie required: SYN data with a kind-34 or 254/0xF989 cookie shows the balancer; a TOA after the cookie is adopted, one only in the ACK is not', async () => {
      fs.writeFileSync(SYSCTL, `${TFO_COOKIE}`);
      const clientTfo = await lb.sysctl('net/ipv4/tcp_fastopen', 1);
      const srv = await readingServer();
      // the client's SYNs (SYN without ACK)
      const cap = await lb.capture({ filter: 'tcp[13] & 0x12 == 2' });
      try {
        const toa = { kind: 254, address: CLIENT_V4, port: 4321 };
        const before = await backend.counters();
        const passive = netstat('TCPFastOpenPassive');
        const active = lb.netstat('TCPFastOpenActive');
        const sent: Array<{ port: number; data: string; synDataAcked: boolean }> = [];
        const one = async (data: string, o: object = {}) => {
          const c = await lb.connect({ port: srv.port, family: 4, fastOpen: true, data, ...o });
          await c.close();
          sent.push({ port: c.localPort, data, synDataAcked: c.synDataAcked });
          const deadline = Date.now() + 5000;
          while (srv.got.length < sent.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        };
        await one('cookie?'); // no cookie yet: a SYN asking for one (kind 34)
        await one('rfc');
        await one('rfc+toa', { toa, placement: 'syn' });
        await one('rfc+ack-toa', { toa, placement: 'ack' });
        // forget the cookie; a request the server leaves unanswered makes
        // the client ask in the experimental form next time
        lb.nsIp(['tcp_metrics flush all']);
        fs.writeFileSync(SYSCTL, `${TFO_COOKIE & ~0x2}`);
        await one('unanswered');
        fs.writeFileSync(SYSCTL, `${TFO_COOKIE}`);
        await one('cookie254?');
        await one('exp');
        await one('exp+toa', { toa, placement: 'syn' });
        expect(srv.got.length, 'connections the server saw end').toBe(sent.length);

        // wire: which cookie option each client SYN carried, then the TOA
        const syns = await cap.stop({ settleMs: 100 });
        const wire = sent.map(({ port }) => syns.filter((p: { sport: number }) => p.sport === port).map(
          (p: { options: Array<{ kind: number; len: number; data: Buffer }>; payloadLength: number }) => [
            ...p.options.filter((o) => o.kind === 34 || o.kind === 254).map((o) =>
              `${o.kind}/${o.len}${o.kind === 254 && o.data.readUInt16BE(0) === 0xf989 ? '/F989' : ''}`),
            p.payloadLength ? 'data' : 'no data'].join(' ')));
        expect(wire).toEqual([
          ['34/2 no data'], // cookie request
          ['34/10 data'], ['34/10 254/8 data'], ['34/10 data'],
          ['34/2 no data'], // unanswered
          ['254/4/F989 no data'], // request in the experimental form
          ['254/12/F989 data'], ['254/12/F989 254/8 data'],
        ]);
        // the SYN-ACK acknowledged the SYN's data, and the server read it
        const inSyn = [false, true, true, true, false, false, true, true];
        expect(sent.map((c) => c.synDataAcked)).toEqual(inSyn);
        expect(srv.got.map((g) => g.data)).toEqual(sent.map((c) => c.data));
        expect(netstat('TCPFastOpenPassive') - passive, 'children made from a SYN (server)').toBe(5);
        expect(lb.netstat('TCPFastOpenActive') - active, 'SYN data acknowledged (client)').toBe(5);

        const balancer = `::ffff:${lb.balancerAddress(4)}`;
        expect(srv.got.map((g) => [g.seen.remoteAddress, g.seen.info.present])).toEqual(sent.map((c, i) =>
          ([2, 7].includes(i) ? [`::ffff:${CLIENT_V4}`, true] : [balancer, false])));
        expect(srv.got.map((g) => g.seen.info.proxyPort)).toEqual(sent.map((c) => c.port));
        const after = await backend.counters();
        const d = (k: string) => after[k] - (before[k] ?? 0);
        expect([d('syn_recv_sock_toa'), d('syn_recv_sock_no_toa')]).toEqual([2, 6]);
      } finally {
        fs.writeFileSync(SYSCTL, tfo);
        await lb.sysctl('net/ipv4/tcp_fastopen', clientTfo);
        await cap.stop({ settleMs: 0 }).catch(() => undefined);
        srv.server.close();
        await once(srv.server, 'close').catch(() => undefined);
      }
    }, 30000);

    it('leaves no trouble in the kernel log', () => {
      expect(kernelTrouble()).toEqual([]);
    });
  });
}
