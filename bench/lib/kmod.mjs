// The kernel module's half of P1/P3/P4, run inside a guest by
// bench/guest-job.mjs. The module is kernel-wide, so A/B means loading and
// unloading it between rounds (ABBA order), with the same servers and
// clients on both sides.
import fs from 'node:fs';
import path from 'node:path';
import { BenchError, LineProc, onCleanup, sh, sleep, slabBytes } from './sys.mjs';
import { abOrder, peernameSummary, summary } from './stats.mjs';
import { abRates, loadgen, setupRound } from './host.mjs';

export class Kmod {
  constructor(ko) {
    this.ko = ko;
    this.loaded = fs.existsSync('/sys/module/toa');
    if (this.loaded) throw new BenchError('EKMOD', 'a toa module is already loaded: the bench must own it');
    onCleanup(() => { if (fs.existsSync('/sys/module/toa')) sh('rmmod', ['toa']); });
  }

  async set(on) {
    if (on === this.loaded) return;
    if (on) sh('insmod', [this.ko]);
    else {
      // rmmod waits for kretprobe handlers; sockets still holding entries are forgotten
      for (let i = 0; ; i++) {
        try { sh('rmmod', ['toa']); break; } catch (e) {
          if (i > 50) throw e;
          await sleep(100);
        }
      }
    }
    this.loaded = on;
  }

  /** /proc/net/toa_stats: per-CPU rows summed, plus the gauges. */
  stats() {
    const out = {};
    for (const line of fs.readFileSync('/proc/net/toa_stats', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 2) continue;
      out[f[0]] = f.slice(1).reduce((a, b) => a + Number(b), 0);
    }
    return out;
  }
}

export async function p3SetupKmod(kmod, env, { rounds, ms, conc }) {
  const { tools, cg } = env;
  const start = async () => {
    const p = new LineProc(tools.probe, ['acceptor', '0'], { cgroup: cg.plain });
    return { p, port: Number((await p.line(20000)).split(' ')[1]) };
  };
  let decoded = 0;
  // a fresh listener per round: one that saw TOA holds the module (its ops)
  const figures = await abRates(rounds, async (side) => {
    await kmod.set(side === 'b');
    const acceptor = await start();
    try {
      loadgen(tools, acceptor.port, 100, conc, cg.cli4);
      const m = await setupRound(tools, acceptor, ms, conc, cg.cli4);
      if (side === 'b') decoded += kmod.stats().syn_recv_sock_toa;
      return m;
    } finally {
      await acceptor.p.stop();
    }
  });
  if (!decoded) throw new BenchError('EP3', 'the module decoded no TOA option during the setup-rate run');
  return { ...figures, optionsDecoded: decoded };
}

export async function p3PeernameKmod(kmod, env, { rounds, conns, iters }) {
  const { tools, cg } = env;
  const out = {};
  for (const [label, cliCg] of [['toa', cg.cli4], ['noToa', null]]) {
    const ns = { a: [], b: [] };
    const info = { a: [], b: [] };
    let peer;
    for (let r = 0; r < rounds; r++) {
      for (const side of abOrder(r)) {
        await kmod.set(side === 'b');
        const server = new LineProc(tools.probe, ['peercost', '0'], { cgroup: cg.plain });
        try {
          const port = Number((await server.line(20000)).split(' ')[1]);
          const h = new LineProc(tools.probe, ['hold', '127.0.0.1', String(port), String(conns)], { cgroup: cliCg ?? undefined });
          await server.ask(`accept ${conns}`, 60000);
          await h.line(60000);
          const p = (await server.ask('peer 0')).split(' ')[1];
          if (side === 'b') {
            peer = p;
            if ((label === 'toa') !== p.startsWith('::ffff:192.0.2.')) throw new BenchError('EP3', `${label}: getpeername with the module says ${p}`);
          }
          await server.ask(`measure ${iters >> 2}`, 60000);
          ns[side].push(Number((await server.ask(`measure ${iters}`, 120000)).split(' ')[1]));
          info[side].push(Number((await server.ask(`info ${iters}`, 120000)).split(' ')[1]));
          await server.ask('close');
          await h.stop();
        } finally {
          await server.stop();
        }
      }
    }
    out[label] = { ...peernameSummary(ns, info), peer };
  }
  return out;
}

/** SLUB's view of one cache, or null without it (the guest boots with slab_nomerge: it is ours alone). */
export function slabObject(name) {
  const dir = `/sys/kernel/slab/${name}`;
  if (!fs.existsSync(dir)) return null;
  const read = (f) => Number(fs.readFileSync(path.join(dir, f), 'utf8').trim().split(/\s+/)[0]);
  const s = { objectSize: read('object_size'), slabSize: read('slab_size'), objects: read('objects'), slabs: read('slabs'), order: read('order') };
  // what the cache takes from the page allocator
  s.cacheBytes = s.slabs * (4096 << s.order);
  return s;
}

/**
 * Per held connection, with the module loaded: its own table entries times
 * the slab footprint of one entry (slab_size: object plus alignment), and,
 * as a cross-check, the change of the entry cache and of all slabs against
 * the same connections without the module. An IPv4 client's entry is a
 * toa_entry; one with an IPv6 (NAT64) client is a toa_entry_wide.
 */
export async function p4Kmod(kmod, env, { conns }) {
  const { tools, cg } = env;
  const out = {};
  for (const [label, cliCg, cache] of [['ipv4', cg.cli4, 'toa_entry'], ['ipv6', cg.cli6, 'toa_entry_wide'], ['none', null, 'toa_entry']]) {
    const perSide = {};
    for (const on of [false, true]) {
      await kmod.set(on);
      const server = new LineProc(tools.probe, ['peercost', '0'], { cgroup: cg.plain });
      const port = Number((await server.line(20000)).split(' ')[1]);
      await sleep(100);
      const s0 = on ? kmod.stats() : null;
      const c0 = on ? slabObject(cache) : null;
      const b0 = slabBytes().total;
      const h = new LineProc(tools.probe, ['hold', '127.0.0.1', String(port), String(conns)], { cgroup: cliCg ?? undefined });
      await server.ask(`accept ${conns}`, 60000);
      await h.line(60000);
      await sleep(100);
      const b1 = slabBytes().total;
      const side = { slabPerConn: (b1 - b0) / conns };
      if (on) {
        const s1 = kmod.stats();
        const c1 = slabObject(cache);
        if (!c1) throw new BenchError('EP4', `no /sys/kernel/slab/${cache}: is toa.ko loaded?`);
        side.entries = s1.table_entries - s0.table_entries;
        side.entrySize = c1.slabSize;
        side.objectSize = c1.objectSize;
        side.entryBytesPerConn = (side.entries * c1.slabSize) / conns;
        side.cacheObjectsPerConn = (c1.objects - c0.objects) / conns;
      }
      await h.stop();
      await server.stop();
      perSide[on ? 'toa' : 'plain'] = side;
    }
    out[label] = {
      bytesPerConn: summary([perSide.toa.entryBytesPerConn]),
      entriesPerConn: perSide.toa.entries / conns,
      entrySize: perSide.toa.entrySize,
      objectSize: perSide.toa.objectSize,
      cacheObjectsPerConn: perSide.toa.cacheObjectsPerConn,
      allSlabsDeltaPerConn: perSide.toa.slabPerConn - perSide.plain.slabPerConn,
    };
  }
  await kmod.set(false);
  return out;
}
