// The guest harness proves itself on each kernel of the matrix, without any
// TOA module: the LB emulator's sockops program loads on this kernel, a Node
// server sees the balancer as its peer, the TOA option arrives where it was
// put, and crafted malformed handshakes reach the server's interface.
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import { once } from 'node:events';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createLoadBalancer, toaOption, type LoadBalancer } from '../support/lb/index.mjs';

const CLIENT_V4 = '198.51.100.7';
const CLIENT_V6 = '2001:db8:c0de::7';

async function listen(host: string, opts: net.ListenOptions = {}) {
  const seen: { address?: string; port?: number }[] = [];
  const server = net.createServer((s) => {
    seen.push({ address: s.remoteAddress, port: s.remotePort });
    s.on('error', () => {});
    s.on('data', (d) => s.end(`echo:${d}`));
  });
  server.listen({ port: 0, host, ...opts });
  await once(server, 'listening');
  return { server, seen, port: (server.address() as net.AddressInfo).port };
}

describe(`guest harness on ${os.release()}`, () => {
  let lb: LoadBalancer;
  let dual: Awaited<ReturnType<typeof listen>>;

  beforeAll(async () => {
    lb = await createLoadBalancer();
    dual = await listen('::');
  });
  afterAll(async () => {
    dual?.server.close();
    await lb?.close();
  });

  it('runs inside the guest the matrix booted (TOA_KERNEL = uname -r)', () => {
    expect(process.env.TOA_KERNEL, 'run through test/support/guest/matrix.mjs').toBeTruthy();
    expect(os.release()).toBe(process.env.TOA_KERNEL);
    expect(process.getuid?.()).toBe(0);
    // the initramfs mounted what the suites need
    const mounts = fs.readFileSync('/proc/mounts', 'utf8');
    expect(mounts).toMatch(/ cgroup2 /);
    expect(mounts).toMatch(/ bpf /);
    expect(fs.existsSync('/dev/net/tun')).toBe(true);
    if (process.env.TOA_KMOD) expect(fs.existsSync(process.env.TOA_KMOD)).toBe(true);
  });

  const shapes = [
    { name: 'IPv4 client to a :: dual-stack listener', family: 4 as const, listener: '::', kind: 200, client: CLIENT_V4 },
    { name: 'IPv4 client to a 0.0.0.0 listener', family: 4 as const, listener: '0.0.0.0', kind: 200, client: CLIENT_V4 },
    { name: 'IPv6 client to a native IPv6 listener', family: 6 as const, listener: '::', kind: 253, client: CLIENT_V6 },
  ];
  for (const s of shapes) {
    it(`${s.name}: server sees the balancer, the option arrives in the final ACK`, async () => {
      const srv = s.listener === '::' ? dual : await listen(s.listener);
      try {
        const cap = await lb.capture();
        const option = toaOption({ kind: s.kind, address: s.client, port: 4242 });
        const conn = await lb.connect({ port: srv.port, family: s.family, option, placement: 'ack' });
        await conn.send('ping');
        expect((await conn.recvAll()).toString()).toBe('echo:ping');
        await conn.close();
        const packets = (await cap.stop()).filter((p) => p.sport === conn.localPort);
        const carrying = packets.filter((p) => p.rawOptions.includes(option));
        expect(carrying).toHaveLength(1);
        expect(carrying[0].flags).toMatchObject({ syn: false, ack: true });
        expect(carrying[0].payloadLength).toBe(0);
        const peer = srv.seen.at(-1)!;
        const balancer = lb.balancerAddress(s.family);
        expect(peer.address).toBe(s.family === 4 && s.listener === '::' ? `::ffff:${balancer}` : balancer);
        expect(peer.port).toBe(conn.localPort);
        expect(await conn.stats()).toMatchObject({ ack: 1, syn: 0, data: 0, lastError: 0 });
      } finally {
        if (srv !== dual) srv.server.close();
      }
    });
  }

  it('places the option in the SYN or the first data segment when asked', async () => {
    const cap = await lb.capture();
    const option = toaOption({ kind: 254, address: CLIENT_V4, port: 1 });
    const syn = await lb.connect({ port: dual.port, option, placement: 'syn' });
    await syn.send('a');
    await syn.recvAll();
    const data = await lb.connect({ port: dual.port, option, placement: 'data' });
    await data.send('b');
    await data.recvAll();
    const packets = await cap.stop();
    const kinds = (port: number) => packets.filter((p) => p.sport === port && p.rawOptions.includes(option))
      .map((p) => (p.flags.syn ? 'syn' : p.payloadLength ? 'data' : 'ack'));
    expect(kinds(syn.localPort)).toEqual(['syn']);
    expect(kinds(data.localPort)).toEqual(['data']);
  });

  it('crafted malformed handshakes reach the server byte for byte', async () => {
    const good = toaOption({ address: CLIENT_V4, port: 4242 }).toString('hex');
    const options = [
      good, // control: must connect on every kernel
      'c8000000', // zero length
      'c8010101', // length 1
      '010101c8', // truncated at the end of the header
      '00000000' + good, // after EOL
      good + good, // duplicated
      'fe08f98911223344', // TFO cookie, kind 254 ExID 0xF989
      'c8280000', // length past the header
    ];
    const cap = await lb.capture();
    const results = await lb.craft(options.map((o, i) => ({ port: dual.port, family: i % 2 ? 6 : 4, ackOptions: o })), { timeoutMs: 5000 });
    const packets = await cap.stop();
    options.forEach((o, i) => {
      const r = results[i];
      expect(r.synAck, `SYN-ACK for ${o}`).toBe(true);
      const ack = packets.find((p) => p.src === r.source.address && p.sport === r.source.port && !p.flags.syn && !p.flags.fin && p.payloadLength === 0);
      expect(ack, `final ACK for ${o} on the wire`).toBeDefined();
      expect(ack!.rawOptions.toString('hex')).toBe(o);
    });
    // The control handshake completes and the server answers it.
    expect(results[0]).toMatchObject({ connected: true, segmentsDropped: false });
    expect(results[0].reply.toString()).toBe('echo:#0\n');
    // Some kernels drop segments with invalid option lengths (6.12): then
    // the SYN-ACK comes again and a bare ACK completes the handshake. Either
    // way every handshake ends well before the timeout, and data that got
    // through is answered.
    for (const r of results) {
      expect(r.timedOut, `handshake ${r.index}`).toBe(false);
      expect(r.connected, `handshake ${r.index}`).toBe(true);
      expect(r.reply.toString(), `handshake ${r.index}`).toBe(r.segmentsDropped ? '' : `echo:#${r.index}\n`);
    }
    console.log(`malformed handshakes whose segments ${os.release()} dropped: ${results.map((r) => (r.segmentsDropped ? 1 : 0)).join('')}`);
  });

  it('finishes crafted handshakes whose option-carrying segments this kernel drops', async () => {
    // TCP-MD5 option on a socket without a key: dropped by every kernel
    const md5 = `1312${'00'.repeat(16)}0101`;
    const [r] = await lb.craft([{ port: dual.port, ackOptions: md5, dataOptions: md5 }], { timeoutMs: 10000 });
    expect(r).toMatchObject({ synAck: true, segmentsDropped: true, connected: true, timedOut: false });
    expect(r.reply.length).toBe(0);
  });

  // the fuzz files craft thousands; here only that several windows in a row complete
  it('crafts a batch of 500 handshakes, 128 in flight (fuzz throughput under TCG)', async () => {
    const N = 500;
    const t0 = Date.now();
    const results = await lb.craft(Array.from({ length: N }, (_, i) => ({
      port: dual.port, family: i % 2 ? 6 : 4, ackOptions: toaOption({ address: CLIENT_V4, port: i }),
    })), { window: 128, timeoutMs: 10000 });
    const ms = Date.now() - t0;
    expect(results.filter((r) => r.connected)).toHaveLength(N);
    console.log(`${N} crafted handshakes in ${ms} ms on ${os.release()} (${Math.round((N * 1000) / ms)}/s)`);
  });
});
