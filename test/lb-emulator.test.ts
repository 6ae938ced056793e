// Self-test of the load-balancer emulator (test/support/lb) on this host's
// kernel: the option is on the wire exactly where requested, the server sees
// the balancer as its peer, crafted malformed options arrive byte for byte,
// and nothing is left behind. Root, BPF, cgroup2, TUN and tcpdump are
// prerequisites: without them these tests fail, they never skip.
import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { execFileSync } from 'node:child_process';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createLoadBalancer, toaOption, cgroup2Root, type LoadBalancer } from './support/lb/index.mjs';
import type { CapturedPacket } from './support/lb/index.mjs';

const CLIENT_V4 = '198.51.100.7';
const CLIENT_V6 = '2001:db8:c0de::7';

type Seen = { address?: string; port?: number; family?: string };

async function listen(host: string, opts: net.ListenOptions = {}) {
  const seen: Seen[] = [];
  const server = net.createServer((s) => {
    seen.push({ address: s.remoteAddress, port: s.remotePort, family: s.remoteFamily });
    s.on('error', () => {});
    s.on('data', (d) => s.end(`echo:${d}`));
  });
  server.listen({ port: 0, host, ...opts });
  await once(server, 'listening');
  return { server, seen, port: (server.address() as net.AddressInfo).port };
}

const segType = (p: CapturedPacket) =>
  p.flags.syn ? 'syn' : p.payloadLength > 0 ? 'data' : p.flags.fin ? 'fin' : 'ack';

describe('LB emulator on the host kernel', () => {
  let lb: LoadBalancer;
  let srv: Awaited<ReturnType<typeof listen>>;

  beforeAll(async () => {
    lb = await createLoadBalancer();
    srv = await listen('::');
  });
  afterAll(async () => {
    srv?.server.close();
    await lb?.close();
  });

  const cases: { name: string; family: 4 | 6; option: Buffer; placement: any; expect: string[] }[] = [
    { name: 'kind 200 in the final ACK', family: 4, option: toaOption({ address: CLIENT_V4, port: 4242 }), placement: 'ack', expect: ['ack'] },
    { name: 'kind 200 in the SYN only', family: 4, option: toaOption({ address: CLIENT_V4, port: 4242 }), placement: 'syn', expect: ['syn'] },
    { name: 'kind 200 in the first data segment only', family: 4, option: toaOption({ address: CLIENT_V4, port: 4242 }), placement: 'data', expect: ['data'] },
    { name: 'kind 254 len 8 in SYN and ACK (LVS)', family: 4, option: toaOption({ kind: 254, address: CLIENT_V4, port: 80 }), placement: ['syn', 'ack'], expect: ['syn', 'ack'] },
    { name: 'kind 253 len 20 over IPv6', family: 6, option: toaOption({ kind: 253, address: CLIENT_V6, port: 5353 }), placement: 'ack', expect: ['ack'] },
    { name: 'kind 254 len 20 NAT64 (IPv6 client, IPv4 balancer)', family: 4, option: toaOption({ kind: 254, address: CLIENT_V6, port: 1 }), placement: 'ack', expect: ['ack'] },
    { name: 'kind 253 len 20 in the SYN (fills the SYN option space)', family: 4, option: toaOption({ kind: 253, address: CLIENT_V6, port: 2 }), placement: 'syn', expect: ['syn'] },
    { name: 'arbitrary kind 30 len 6', family: 6, option: Buffer.from('1e06cafe0001', 'hex'), placement: 'ack', expect: ['ack'] },
    { name: 'absent', family: 4, option: toaOption({ address: CLIENT_V4, port: 4242 }), placement: 'none', expect: [] },
  ];

  for (const c of cases) {
    it(`puts ${c.name} on the wire, and the server sees the balancer`, async () => {
      const cap = await lb.capture();
      const before = srv.seen.length;
      const conn = await lb.connect({ port: srv.port, family: c.family, option: c.option, placement: c.placement });
      await conn.send('hi');
      expect((await conn.recvAll()).toString()).toBe('echo:hi');
      await conn.close();
      const packets = (await cap.stop()).filter((p) => p.sport === conn.localPort);
      const withOpt = packets.filter((p) => p.rawOptions.includes(c.option));
      expect(withOpt.map(segType)).toEqual(c.expect);
      // Every carried option decodes as exactly the requested kind/len/bytes.
      for (const p of withOpt) {
        expect(p.options.find((o) => o.kind === c.option[0])).toMatchObject({ len: c.option[1] });
      }
      expect(srv.seen.length).toBe(before + 1);
      const peer = srv.seen.at(-1)!;
      expect(peer.port).toBe(conn.localPort);
      expect(peer.address).toBe(c.family === 4 ? `::ffff:${lb.balancerAddress(4)}` : lb.balancerAddress(6));
      expect(packets.every((p) => p.src === lb.balancerAddress(c.family) || p.dst === lb.balancerAddress(c.family))).toBe(true);
      const st = await conn.stats();
      expect(st.lastError).toBe(0);
      expect(st.syn + st.ack + st.data).toBe(c.expect.length);
    });
  }

  it('covers the listener shapes: 0.0.0.0, :: dual-stack with IPv4 clients, native IPv6', async () => {
    const v4only = await listen('0.0.0.0');
    const v6only = await listen('::', { ipv6Only: true });
    try {
      const shapes: [typeof v4only, 4 | 6, string][] = [
        [v4only, 4, lb.balancerAddress(4)],
        [srv, 4, `::ffff:${lb.balancerAddress(4)}`],
        [v6only, 6, lb.balancerAddress(6)],
      ];
      for (const [s, family, peer] of shapes) {
        const conn = await lb.connect({ port: s.port, family, toa: { address: family === 4 ? CLIENT_V4 : CLIENT_V6, kind: family === 4 ? 200 : 253, port: 9 } });
        await conn.send('x');
        expect((await conn.recvAll()).toString()).toBe('echo:x');
        await conn.close();
        expect(s.seen.at(-1)).toMatchObject({ address: peer, port: conn.localPort });
        expect((await conn.stats()).ack).toBe(1);
      }
    } finally {
      v4only.server.close();
      v6only.server.close();
    }
  });

  it('crafts malformed options that reach the server byte for byte', async () => {
    const good = toaOption({ address: CLIENT_V4, port: 4242 });
    const malformed: Record<string, string> = {
      'bad length (len 9 for 8 bytes)': 'c809109a c6336407'.replace(/ /g, ''),
      'zero length': 'c8000000',
      'length 1': 'c8010101',
      'truncated at the end of the header': '010101c8',
      'option after EOL': '00000000' + good.toString('hex'),
      'duplicated': good.toString('hex') + toaOption({ address: '198.51.100.8', port: 1 }).toString('hex'),
      'NOP run': '0101010101010101' + good.toString('hex'),
      'TFO cookie kind 254 ExID 0xF989': 'fe08f9891122334401010101'.slice(0, 16),
      'length past the header': 'c8280000',
      'valid 253 over IPv6': toaOption({ kind: 253, address: CLIENT_V6, port: 7 }).toString('hex'),
    };
    const names = Object.keys(malformed);
    const cap = await lb.capture();
    const before = srv.seen.length;
    const results = await lb.craft(names.map((n, i) => ({ port: srv.port, family: i % 2 ? 6 : 4, ackOptions: malformed[n] })));
    const packets = await cap.stop();
    names.forEach((n, i) => {
      const r = results[i];
      const ack = packets.find((p) => p.sport === r.source.port && p.src === r.source.address && !p.flags.syn && p.payloadLength === 0 && !p.flags.fin);
      expect(ack, n).toBeDefined();
      const want = Buffer.from(malformed[n], 'hex');
      const padded = Buffer.concat([want, Buffer.alloc((4 - (want.length % 4)) % 4)]);
      expect(ack!.rawOptions.equals(padded), n).toBe(true);
      // This host's kernel (6.18) completes these handshakes: options it cannot parse are ignored.
      expect(r.connected, n).toBe(true);
      expect(r.reply.toString(), n).toBe(`echo:#${i}\n`);
    });
    const addrs = srv.seen.slice(before).map((s) => s.address!.replace('::ffff:', ''));
    expect(addrs.sort()).toEqual(results.map((r) => r.source.address).sort());
  });

  it('crafts SYN-only, data-only (ACK lost) and FIN-with-data placements', async () => {
    const opt = toaOption({ address: CLIENT_V4, port: 1 }).toString('hex');
    const cap = await lb.capture();
    const [syn, dataOnly, finData] = await lb.craft([
      { port: srv.port, synOptions: opt },
      { port: srv.port, dataOptions: opt, noAck: true },
      { port: srv.port, dataOptions: opt, noAck: true, dataFin: true },
    ]);
    const packets = await cap.stop();
    const carrying = (r: typeof syn) => packets
      .filter((p) => p.sport === r.source.port && p.src === r.source.address && p.options.some((o) => o.kind === 200))
      .map(segType);
    expect(carrying(syn)).toEqual(['syn']);
    expect(carrying(dataOnly)).toEqual(['data']);
    expect(carrying(finData)).toEqual(['data']);
    expect(packets.find((p) => p.sport === finData.source.port && p.payloadLength > 0)!.flags.fin).toBe(true);
    for (const r of [syn, dataOnly, finData]) expect(r.connected).toBe(true);
  });

  it('finishes handshakes whose option-carrying segments the server drops', async () => {
    // A TCP-MD5 option on a socket without a key: every kernel drops the segment.
    const md5 = `1312${'00'.repeat(16)}0101`;
    const [both, ackOnly] = await lb.craft([
      { port: srv.port, ackOptions: md5, dataOptions: md5 },
      { port: srv.port, ackOptions: md5 },
    ], { timeoutMs: 8000 });
    // data and ACK lost: the separate FIN completes the handshake, nothing is acked
    expect(both).toMatchObject({ segmentsDropped: true, connected: true, timedOut: false });
    expect(both.reply.length).toBe(0);
    expect(both.ms).toBeLessThan(4000);
    // only the final ACK lost: the data segment completes the handshake
    expect(ackOnly).toMatchObject({ segmentsDropped: false, connected: true, timedOut: false });
    expect(ackOnly.reply.toString()).toBe(`echo:#1\n`);
  });

  it('runs 5000 crafted handshakes in a batch quickly', async () => {
    const t0 = Date.now();
    const results = await lb.craft(Array.from({ length: 5000 }, (_, i) => ({
      port: srv.port, family: i % 2 ? 6 : 4, ackOptions: toaOption({ address: CLIENT_V4, port: i }),
    })), { window: 128 });
    const ms = Date.now() - t0;
    expect(results.filter((r) => r.connected).length).toBe(5000);
    expect(ms).toBeLessThan(15000);
  });

  it('reports an unreachable server as a clear error and a timeout, not a hang', async () => {
    const closed = await listen('::');
    closed.server.close();
    await once(closed.server, 'close');
    await expect(lb.connect({ port: closed.port })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    const [r] = await lb.craft([{ port: closed.port }], { timeoutMs: 500 });
    expect(r).toMatchObject({ synAck: false, rst: true, connected: false });
  });
});

describe('LB emulator cleanup', () => {
  const leftovers = (lb: LoadBalancer) => ({
    iface: fs.existsSync(`/sys/class/net/${lb.hostIface}`),
    cgroup: fs.existsSync(lb.cgroup),
    lock: fs.existsSync(`/run/toa-lb/${lb.index}.lock`),
  });

  it('close() removes netns, veth, cgroup and lock', async () => {
    const lb = await createLoadBalancer();
    expect(lb.cgroup.startsWith(cgroup2Root())).toBe(true);
    expect(leftovers(lb)).toEqual({ iface: true, cgroup: true, lock: true });
    const ns = fs.readlinkSync(lb.netnsPath());
    await lb.close();
    expect(leftovers(lb)).toEqual({ iface: false, cgroup: false, lock: false });
    // the namespace is gone with its only process
    const all = execFileSync('lsns', ['-t', 'net', '-o', 'NS', '-n'], { encoding: 'utf8' });
    expect(all.split(/\s+/)).not.toContain(ns.replace(/\D/g, ''));
  });

  it('a killed helper takes its netns, veth and TUN with it, and close() still cleans up', async () => {
    const lb = await createLoadBalancer();
    await lb.craft([]); // creates the TUN
    process.kill(lb.helperPid, 'SIGKILL');
    await expect(lb.connect({ port: 1 })).rejects.toMatchObject({ code: 'EHELPER' });
    for (let i = 0; i < 100 && fs.existsSync(`/sys/class/net/${lb.hostIface}`); i++) await new Promise((r) => setTimeout(r, 20));
    expect(fs.existsSync(`/sys/class/net/${lb.hostIface}`)).toBe(false);
    await lb.close();
    expect(leftovers(lb)).toEqual({ iface: false, cgroup: false, lock: false });
  });
});
