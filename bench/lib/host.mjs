// The host half of the bench: P1 and P2 (the addon), and the eBPF halves of
// P3 (kernel cost) and P4 (memory). The eBPF backend is attached only to
// cgroups made here, and every process whose sockets it should see is
// started inside one of them.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import {
  BenchError, LineProc, attachBackend, attachClientOption, makeBpffs, makeCgroup, root, sh, slabBytes, sleep,
} from './sys.mjs';
import { abOrder, acceptSummary, peernameSummary, ratios, summary } from './stats.mjs';

/**
 * cgroups: `toa` (backend attached), `plain` (nothing), `cli4` / `cli6`
 * (load generators whose segments carry an IPv4 / IPv6 TOA option).
 */
export async function hostEnv(tools) {
  const bpffs = makeBpffs();
  const cg = {
    toa: makeCgroup('srv-toa'),
    plain: makeCgroup('srv-plain'),
    cli4: makeCgroup('cli4'),
    cli6: makeCgroup('cli6'),
  };
  const backend = await attachBackend(cg.toa, bpffs);
  attachClientOption(cg.cli4, tools.client4, bpffs, 'v4');
  attachClientOption(cg.cli6, tools.client6, bpffs, 'v6');
  return { bpffs, cg, backend, tools };
}

function inCgroup(cgroup, cmd, args) {
  return sh('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, cmd, ...args]);
}

// ---------------------------------------------------------------- P1

async function runP1Child(mode, rounds, k, cgroup) {
  const child = new LineProc(process.execPath, [path.join(root, 'bench', 'p1-addon.mjs'), mode, String(rounds), String(k)], { cgroup });
  const rows = [];
  for (;;) {
    const line = await child.line(120000);
    const msg = JSON.parse(line);
    if (msg.error) throw new BenchError('EP1', `${mode}: ${msg.error}`);
    if (msg.done) break;
    rows.push(msg);
  }
  await child.stop();
  return rows;
}

function p1Figures(rows, provider) {
  const col = (kind, name) => rows.map((r) => r[kind][name]);
  const firstRemote = col('first', 'remote');
  const cachedRemote = col('cached', 'remote');
  return {
    firstRemoteNs: summary(firstRemote),
    firstLookupNs: summary(col('first', 'lookup')),
    firstRealNs: summary(col('first', 'real')),
    firstLookupRatio: summary(ratios(col('first', 'lookup'), firstRemote)),
    firstRealRatio: summary(ratios(col('first', 'real'), firstRemote)),
    cachedRemoteNs: summary(cachedRemote),
    cachedRealNs: summary(col('cached', 'real')),
    cachedLookupNs: summary(col('cached', 'lookup')),
    cachedRealRatio: summary(ratios(col('cached', 'real'), cachedRemote)),
    provider,
    rounds: rows.length,
  };
}

export async function p1Plain({ rounds, k }) {
  return p1Figures(await runP1Child('plain', rounds, k), 'none');
}

export async function p1Bpf(env, { rounds, k }) {
  return p1Figures(await runP1Child('lb', rounds, k, env.cg.toa), 'eBPF backend, IPv4 TOA kind 200 from the LB emulator');
}

/** With a kernel-wide provider (the module) already loaded: no cgroup needed. */
export async function p1Kmod({ rounds, k }) {
  return p1Figures(await runP1Child('lb', rounds, k), 'kernel module, IPv4 TOA kind 200 from the LB emulator');
}

// ---------------------------------------------------------------- P2

async function startP2Server(variant, cgroup) {
  const p = new LineProc(process.execPath, [path.join(root, 'bench', 'p2-server.mjs'), variant], { cgroup });
  const port = Number((await p.line(20000)).split(' ')[1]);
  return { p, port };
}

/** One load-generator run: connections, their wall rate and the generator's own CPU time. */
export function loadgen(tools, port, ms, conc, cgroup) {
  const args = ['loadgen', '127.0.0.1', String(port), String(conc), String(ms)];
  return parseLoadgen(cgroup ? inCgroup(cgroup, tools.probe, args) : sh(tools.probe, args));
}

/** The generator's last line: connections, their wall rate and its own CPU time. */
function parseLoadgen(out) {
  const m = /conns (\d+) failed (\d+) ms ([\d.]+) cpu_us (\d+)/.exec(out);
  if (!m) throw new BenchError('ELOADGEN', `unexpected loadgen output: ${out}`);
  const conns = Number(m[1]);
  if (!conns) throw new BenchError('ELOADGEN', `no connection completed: ${out}`);
  return { conns, rate: conns / (Number(m[3]) / 1000), cpuUs: Number(m[4]) };
}

/**
 * Rounds of A then B (ABBA...). `measure(side)` returns { rate, cpuUs, conns }.
 * Two figures per side: the wall-clock rate, and connections per CPU-second
 * of the processes involved, which other tenants of the machine cannot
 * inflate by preempting us.
 */
export async function abRates(rounds, measure) {
  const wall = { a: [], b: [] };
  const perCpu = { a: [], b: [] };
  for (let r = 0; r < rounds; r++) {
    for (const side of abOrder(r)) {
      const m = await measure(side);
      wall[side].push(m.rate);
      perCpu[side].push(m.conns / (m.cpuUs / 1e6));
    }
  }
  return acceptSummary(wall, perCpu);
}

/**
 * Accept rate of the same server with and without node-toa, rounds
 * alternating ABBA. With `env`, both servers run under the eBPF backend and
 * every connection carries an IPv4 TOA option.
 */
export async function p2(tools, { rounds, ms, conc, env }) {
  const srvCg = env?.cg.toa;
  const cliCg = env?.cg.cli4;
  const a = await startP2Server('plain', srvCg);
  const b = await startP2Server('toa', srvCg);
  try {
    loadgen(tools, a.port, 300, conc, cliCg); // warm-up: JIT, accept queue
    loadgen(tools, b.port, 300, conc, cliCg);
    // the addon's cost is all in the server process: its CPU per accepted connection
    const figures = await abRates(rounds, async (side) => {
      const srv = side === 'a' ? a : b;
      const s0 = JSON.parse(await srv.p.ask('stats'));
      const lg = loadgen(tools, srv.port, ms, conc, cliCg);
      const s1 = JSON.parse(await srv.p.ask('stats'));
      return { rate: lg.rate, conns: s1.accepted - s0.accepted, cpuUs: s1.cpuUs - s0.cpuUs };
    });
    const stats = {};
    for (const [name, s] of [['plain', a], ['toa', b]]) {
      stats[name] = JSON.parse(await s.p.ask('stats'));
      if (stats[name].missing) throw new BenchError('EP2', `${name} server read no address on ${stats[name].missing} connections`);
    }
    return {
      ...figures,
      accepted: stats,
      provider: env ? 'eBPF backend (host), IPv4 TOA on every connection' : 'none',
    };
  } finally {
    await a.p.stop();
    await b.p.stop();
  }
}

// ---------------------------------------------------------------- P3 (eBPF, host)

/** One setup-rate round against a C acceptor: CPU of acceptor + generator. */
export async function setupRound(tools, acceptor, ms, conc, cliCg) {
  const c0 = Number((await acceptor.p.ask('cpu')).split(' ')[1]);
  const lg = loadgen(tools, acceptor.port, ms, conc, cliCg);
  const c1 = Number((await acceptor.p.ask('cpu')).split(' ')[1]);
  return { rate: lg.rate, conns: lg.conns, cpuUs: lg.cpuUs + (c1 - c0) };
}

/** loadgen without blocking the event loop, so that two can run at once. */
function loadgenAsync(tools, port, ms, conc, cgroup) {
  const args = ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, tools.probe, 'loadgen', '127.0.0.1', String(port), String(conc), String(ms)];
  return new Promise((resolve, reject) => {
    const p = spawn('sh', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('error', reject);
    // 'close', not 'exit': stdout may still hold the answer when the process exits
    p.on('close', (code, sig) => {
      try {
        resolve(parseLoadgen(out));
      } catch (e) {
        reject(new BenchError('ELOADGEN', `loadgen exited ${code ?? sig}: ${e.message}`));
      }
    });
  });
}

/**
 * Connection setup rate: a C accept-and-close loop under the backend vs a
 * sibling without it. Each round loads both at the same time, each with its
 * own generator, and takes the ratio of that round: serial ABBA rounds of
 * 500 ms on this shared 2-core host met a different neighbour (QEMU guests)
 * on each side, and their per-round ratios spread 0.74-1.17. Control
 * rounds, interleaved with those, pit two acceptors without the backend
 * against each other: their ratio is what the method reads when there is
 * no difference (the noise floor).
 */
export async function p3SetupBpf(env, { rounds, ms, conc }) {
  const { tools, cg } = env;
  const start = async (cgroup) => {
    const p = new LineProc(tools.probe, ['acceptor', '0'], { cgroup });
    return { p, port: Number((await p.line(10000)).split(' ')[1]) };
  };
  const cpu = async (s) => Number((await s.p.ask('cpu')).split(' ')[1]);
  /** One round of x and y at once; pushes each side's rate and connections per CPU-second. */
  const together = async (x, y, r, into) => {
    const pair = { a: x, b: y };
    const c0 = { a: await cpu(x), b: await cpu(y) };
    const runs = {};
    // the side started first alternates
    await Promise.all(abOrder(r).map((side) => loadgenAsync(tools, pair[side].port, ms, conc, cg.cli4)
      .then((m) => { runs[side] = m; })));
    for (const side of ['a', 'b']) {
      const us = runs[side].cpuUs + (await cpu(pair[side])) - c0[side];
      into.wall[side].push(runs[side].rate);
      into.perCpu[side].push(runs[side].conns / (us / 1e6));
    }
  };
  const a = await start(cg.plain);
  const b = await start(cg.toa);
  const c = await start(cg.plain);
  try {
    const before = await env.backend.counters();
    for (const s of [a, b, c]) loadgen(tools, s.port, 200, conc, cg.cli4);
    const test = { wall: { a: [], b: [] }, perCpu: { a: [], b: [] } };
    const control = { wall: { a: [], b: [] }, perCpu: { a: [], b: [] } };
    for (let r = 0; r < rounds; r++) {
      await together(a, b, r, test);
      await together(a, c, r, control);
    }
    const after = await env.backend.counters();
    const parsed = after.syn_recv_sock_toa - before.syn_recv_sock_toa;
    if (parsed <= 0) throw new BenchError('EP3', 'the backend decoded no TOA option during the setup-rate run');
    return {
      ...acceptSummary(test.wall, test.perCpu),
      control: acceptSummary(control.wall, control.perCpu),
      method: `side by side, ${rounds} rounds of ${ms} ms, each followed by a control round`,
      optionsDecoded: parsed,
    };
  } finally {
    for (const s of [a, b, c]) await s.p.stop();
  }
}

/** getpeername cost in C on held connections, under the backend vs not. */
export async function p3PeernameBpf(env, { rounds, conns, iters }) {
  const { tools, cg } = env;
  const out = {};
  for (const [label, cliCg] of [['toa', cg.cli4], ['noToa', null]]) {
    const servers = {};
    const holders = [];
    for (const side of ['plain', 'toa']) {
      const p = new LineProc(tools.probe, ['peercost', '0'], { cgroup: cg[side] });
      const port = Number((await p.line(10000)).split(' ')[1]);
      const h = new LineProc(tools.probe, ['hold', '127.0.0.1', String(port), String(conns)], { cgroup: cliCg ?? undefined });
      holders.push(h);
      await p.ask(`accept ${conns}`, 30000);
      await h.line(30000);
      servers[side] = p;
    }
    const peer = (await servers.toa.ask('peer 0')).split(' ')[1];
    const expectToa = label === 'toa';
    if (expectToa !== peer.startsWith('::ffff:192.0.2.')) {
      throw new BenchError('EP3', `${label}: getpeername under the backend says ${peer}`);
    }
    // getpeername (what remoteAddress costs) and node-toa's getsockopt
    // query (what lookup() costs), each side in turn
    const ns = { plain: [], toa: [], plainInfo: [], toaInfo: [] };
    await servers.plain.ask(`measure ${iters}`);
    await servers.toa.ask(`measure ${iters}`);
    for (let r = 0; r < rounds; r++) {
      for (const side of abOrder(r)) {
        const name = side === 'a' ? 'plain' : 'toa';
        ns[name].push(Number((await servers[name].ask(`measure ${iters}`)).split(' ')[1]));
        ns[`${name}Info`].push(Number((await servers[name].ask(`info ${iters}`)).split(' ')[1]));
      }
    }
    for (const h of holders) await h.stop();
    for (const s of Object.values(servers)) await s.stop();
    out[label] = { ...peernameSummary({ a: ns.plain, b: ns.toa }, { a: ns.plainInfo, b: ns.toaInfo }), peer };
  }
  return out;
}

// ---------------------------------------------------------------- P4 (eBPF, host)

const KMALLOC_CLASSES = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096];
const kmallocSize = (n) => KMALLOC_CLASSES.find((c) => c >= n) ?? n;

/**
 * What socket storage must cost by construction on this kernel, from its
 * BTF: one element (offsetof(bpf_local_storage_elem, sdata.data) plus the
 * value, as 6.1+ sizes it) and, for a socket's first element, the
 * bpf_local_storage that anchors it, each rounded up to its kmalloc size
 * class. bpftool reads the BTF: pahole 1.24 (here) does not know 6.18's BTF kinds.
 */
export function storageBytesFromBtf(valueSize) {
  const r = spawnSync('bpftool', ['-j', 'btf', 'dump', 'file', '/sys/kernel/btf/vmlinux'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0 || !r.stdout) return { error: `bpftool btf dump: ${(r.stderr || '').split('\n')[0] || r.error?.message}` };
  const want = new Set(['bpf_local_storage_elem', 'bpf_local_storage_data', 'bpf_local_storage']);
  const structs = {};
  for (const t of JSON.parse(r.stdout).types) {
    if (t.kind === 'STRUCT' && want.has(t.name)) structs[t.name] = t;
  }
  const offset = (s, member) => (structs[s]?.members.find((m) => m.name === member)?.bits_offset ?? NaN) / 8;
  const elem = offset('bpf_local_storage_elem', 'sdata') + offset('bpf_local_storage_data', 'data') + valueSize;
  const storage = structs.bpf_local_storage?.size ?? NaN;
  if (!Number.isFinite(elem) || !Number.isFinite(storage)) return { error: 'bpf_local_storage structs missing from the BTF' };
  return { valueBytes: valueSize, elemBytes: elem, storageBytes: storage, perSocket: kmallocSize(elem) + kmallocSize(storage) };
}

function skStorageValueSize(pinDir) {
  return JSON.parse(sh('bpftool', ['-j', 'map', 'show', 'pinned', path.join(pinDir, 'maps', 'toa_sk')])).bytes_value;
}

/**
 * Bytes per held connection under the backend minus the same without it,
 * for IPv4 TOA, IPv6 TOA and no TOA. Socket storage comes from the generic
 * kmalloc caches (bpf_local_storage_elem + value, and bpf_local_storage on
 * a socket's first entry); sockets, request socks and skbs have caches of
 * their own, so only kmalloc-* is compared, which keeps out most of what
 * other tenants of the machine allocate. Rounds alternate; median reported.
 */
export async function p4Bpf(env, { rounds, conns }) {
  const { tools, cg } = env;
  const hold = async (srvCg, cliCg) => {
    const p = new LineProc(tools.probe, ['peercost', '0'], { cgroup: srvCg });
    const port = Number((await p.line(10000)).split(' ')[1]);
    await sleep(50);
    const before = slabBytes().kmalloc;
    const h = new LineProc(tools.probe, ['hold', '127.0.0.1', String(port), String(conns)], { cgroup: cliCg ?? undefined });
    await p.ask(`accept ${conns}`, 30000);
    await h.line(30000);
    await sleep(50);
    const after = slabBytes().kmalloc;
    await h.stop();
    await p.stop();
    return (after - before) / conns;
  };
  // the map's value as the loaded program declares it (struct toa_bpf_sk)
  const out = { fromStructs: storageBytesFromBtf(skStorageValueSize(env.backend.pinDir)) };
  for (const [label, cliCg] of [['ipv4', cg.cli4], ['ipv6', cg.cli6], ['none', null]]) {
    const per = { plain: [], toa: [] };
    for (let r = 0; r < rounds; r++) {
      for (const side of abOrder(r)) {
        const name = side === 'a' ? 'plain' : 'toa';
        per[name].push(await hold(cg[name], cliCg));
      }
    }
    out[label] = {
      bytesPerConn: summary(per.toa.map((x, i) => x - per.plain[i])),
      plainKmallocPerConn: summary(per.plain),
      toaKmallocPerConn: summary(per.toa),
    };
  }
  return out;
}
