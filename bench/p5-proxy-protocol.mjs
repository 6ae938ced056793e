// P5, PROXY protocol (node-toa/proxy-protocol):
//   accepts per server CPU-second, v2 header + acceptProxyProtocol vs plain
//   (both servers load node-toa/register, read realRemoteAddress after the
//   first data and close; both clients send the same request bytes, the
//   proxied one behind a v2 header with two TLVs), and the parse cost of one
//   header (v1 and v2) in this process.
//
//   node bench/p5-proxy-protocol.mjs            the figures as JSON (needs npm run build)
//   node bench/p5-proxy-protocol.mjs server plain|proxy    (child: the server)
//   node bench/p5-proxy-protocol.mjs load <port> <ms> <conc> plain|proxy   (child: the clients)
// NODE_TOA_DIST points at another build of dist/ (default: ./dist).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { acceptSummary, summary } from './lib/stats.mjs';

const here = fileURLToPath(import.meta.url);
const root = path.resolve(path.dirname(here), '..');
const dist = path.resolve(process.env.NODE_TOA_DIST ?? path.join(root, 'dist'));
const require = createRequire(import.meta.url);
const pp = () => require(path.join(dist, 'cjs/proxy-protocol/index.js'));

const REQUEST = Buffer.from('PING /bench\r\n');
function header() {
  return pp().encodeProxyHeader({
    version: 2,
    source: { address: '203.0.113.7', port: 50123 },
    destination: { address: '198.51.100.1', port: 443 },
    tlvs: [{ type: 0x01, value: Buffer.from('h2') }, { type: 0x02, value: Buffer.from('api.example.com') }],
  });
}

function server(variant) {
  require(path.join(dist, 'cjs/register.js'));
  let accepted = 0;
  let missing = 0;
  const expected = variant === 'proxy' ? '203.0.113.7' : '127.0.0.1';
  const srv = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => {
      accepted++;
      if (s.realRemoteAddress !== expected) missing++;
      s.destroy();
    });
  });
  if (variant === 'proxy') pp().acceptProxyProtocol(srv, { trusted: ['127.0.0.1/32'] });
  else if (variant !== 'plain') throw new Error(`unknown variant ${variant}`);
  srv.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => process.stdout.write(`ready ${srv.address().port}\n`));
  createInterface({ input: process.stdin })
    .on('line', (line) => {
      if (line !== 'stats') return;
      const { user, system } = process.cpuUsage();
      process.stdout.write(`${JSON.stringify({ accepted, missing, cpuUs: user + system })}\n`);
    })
    .on('close', () => process.exit(0));
}

function load(port, ms, conc, variant) {
  const payload = variant === 'proxy' ? Buffer.concat([header(), REQUEST]) : REQUEST;
  const end = Date.now() + ms;
  let done = 0;
  let running = 0;
  const t0 = Date.now();
  const one = () => {
    if (Date.now() >= end) {
      if (--running === 0) process.stdout.write(`${JSON.stringify({ conns: done, ms: Date.now() - t0 })}\n`);
      return;
    }
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    c.on('close', () => { done++; one(); });
    c.end(payload);
    c.resume();
  };
  for (let i = 0; i < conc; i++) { running++; one(); }
}

class Child {
  constructor(args) {
    this.name = args.join(' ');
    this.p = spawn(process.execPath, [here, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = createInterface({ input: this.p.stdout });
    this.queue = [];
    this.lines.on('line', (l) => this.queue.shift()?.(l));
    this.p.on('exit', (code) => { for (const f of this.queue.splice(0)) f(new Error(`bench child exited with ${code}`)); });
  }
  line(ms = 15000, what = 'a line') {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`bench child "${this.name}" sent no ${what} within ${ms} ms`)), ms);
      this.queue.push((l) => { clearTimeout(t); if (l instanceof Error) reject(l); else resolve(l); });
    });
  }
  async ask(cmd) { const l = this.line(15000, `answer to "${cmd}"`); this.p.stdin.write(`${cmd}\n`); return l; }
  async stop() { this.p.stdin.end(); if (this.p.exitCode === null) await once(this.p, 'exit'); }
}

async function loadRound(port, ms, conc, variant) {
  const c = new Child(['load', String(port), String(ms), String(conc), variant]);
  const r = JSON.parse(await c.line(ms + 15000, 'result'));
  await once(c.p, 'exit');
  return r;
}

/**
 * Accepts per server CPU-second, proxied / plain. Each round loads both
 * servers at the same time, each with its own client: on a shared machine
 * both then see the same neighbours, where rounds taken one after the other
 * (ABBA) saw different ones (per-round ratios 0.38-1.73 at load average 8).
 */
export async function proxyAccepts({ rounds = 24, ms = 600, conc = 16, warmupMs = 3000 } = {}) {
  const plain = new Child(['server', 'plain']);
  const proxy = new Child(['server', 'proxy']);
  const both = (f) => Promise.all([f(plain, 'a', 'plain'), f(proxy, 'b', 'proxy')]);
  try {
    const ports = {};
    await both(async (c, k) => { ports[k] = Number((await c.line()).split(' ')[1]); });
    // Warm-up long enough for V8 to finish optimising both servers: cpuUsage
    // counts the compiler threads too, and the proxied server has more code.
    await both((c, k, v) => loadRound(ports[k], warmupMs, conc, v));
    // The first 'stats' runs the stdin stream through the same Readable and
    // EventEmitter code as the connections, with another socket shape: V8
    // deoptimizes that code (seen with --trace-deopt: Socket.read,
    // Readable.read, addChunk, emit...). Once here, and a short load after
    // it to reoptimize, so that the first round does not pay for it.
    await both((c) => c.ask('stats'));
    await both((c, k, v) => loadRound(ports[k], warmupMs / 3, conc, v));
    const wall = { a: [], b: [] };
    const perCpu = { a: [], b: [] };
    for (let r = 0; r < rounds; r++) {
      await both(async (c, k, v) => {
        const s0 = JSON.parse(await c.ask('stats'));
        const lg = await loadRound(ports[k], ms, conc, v);
        const s1 = JSON.parse(await c.ask('stats'));
        wall[k].push(lg.conns / (lg.ms / 1000));
        perCpu[k].push((s1.accepted - s0.accepted) / ((s1.cpuUs - s0.cpuUs) / 1e6));
      });
    }
    for (const [name, c] of [['plain', plain], ['proxy', proxy]]) {
      const s = JSON.parse(await c.ask('stats'));
      if (s.missing) throw new Error(`${name} server saw a wrong address on ${s.missing} of ${s.accepted} connections`);
    }
    return { pairing: 'both servers loaded at once, each round', ...acceptSummary(wall, perCpu) };
  } finally {
    await plain.stop();
    await proxy.stop();
  }
}

/** CPU ns per parseProxyHeader of one header, median over rounds. */
export function proxyParseCost({ rounds = 10, iters = 50000 } = {}) {
  const { parseProxyHeader, encodeProxyHeader } = pp();
  const v2 = header();
  const v1 = encodeProxyHeader({ version: 1, source: { address: '203.0.113.7', port: 50123 }, destination: { address: '198.51.100.1', port: 443 } });
  const v1v6 = encodeProxyHeader({ version: 1, source: { address: '2001:db8::7', port: 50123 }, destination: { address: '2001:db8::1', port: 443 } });
  const out = {};
  for (const [name, h] of [['v2', v2], ['v1', v1], ['v1-ipv6', v1v6]]) {
    const runs = [];
    for (let r = 0; r < rounds; r++) {
      let sink = 0;
      // CPU time, not wall clock: on a shared machine the process is descheduled
      const t = process.cpuUsage();
      for (let i = 0; i < iters; i++) sink += parseProxyHeader(h).status.length;
      const used = process.cpuUsage(t);
      runs.push(((used.user + used.system) * 1000) / iters);
      if (sink === 0) throw new Error('unreachable');
    }
    out[name] = summary(runs);
  }
  return out;
}

const [mode, ...rest] = process.argv.slice(2);
if (process.argv[1] === here) {
  if (mode === 'server') server(rest[0]);
  else if (mode === 'load') load(Number(rest[0]), Number(rest[1]), Number(rest[2]), rest[3]);
  else {
    const quick = mode === '--quick';
    const accepts = await proxyAccepts({ rounds: quick ? 6 : 24 });
    const parse = proxyParseCost({ rounds: quick ? 3 : 10 });
    process.stdout.write(`${JSON.stringify({ accepts, parse }, null, 2)}\n`);
  }
}
