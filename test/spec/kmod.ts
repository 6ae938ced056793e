// Driving toa.ko from tests running as root inside a guest: finding the
// module built for the running kernel, loading it with parameters, reading
// its counters and table, and checking the kernel log.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Backend, BackendConfig } from './behaviour';

const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * toa.ko for the running kernel: $TOA_KMOD_UNDER_TEST (another build, e.g.
 * the previous commit's, to watch a new test fail: matrix.mjs --env), else
 * $TOA_KMOD_KO (the guest harness sets it),
 * else the harness's .cache/kmod/<release>/toa.ko, else what
 * kmod/scripts/build-matrix.sh leaves in .cache/kmod-matrix/<release>/.
 */
export function koPath(): string {
  const release = os.release();
  const candidates = [process.env.TOA_KMOD_UNDER_TEST, process.env.TOA_KMOD_KO, path.join(root, '.cache/kmod', release, 'toa.ko'),
    path.join(root, '.cache/kmod-matrix', release, 'toa.ko')].filter(Boolean) as string[];
  for (const c of candidates) if (fs.existsSync(c)) return c;
  throw new Error(`no toa.ko for kernel ${release}: run kmod/scripts/build-matrix.sh on the host (looked in ${candidates.join(', ')})`);
}

function sh(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw r.error;
  return r;
}

export function loaded(): boolean {
  return fs.existsSync('/sys/module/toa');
}

function paramArgs(c: BackendConfig): string[] {
  const a: string[] = [];
  if (c.ipv4Kinds) a.push(`ipv4_kinds=${c.ipv4Kinds.join(',')}`);
  if (c.ipv6Kinds) a.push(`ipv6_kinds=${c.ipv6Kinds.join(',')}`);
  if (c.trusted && c.trusted.length) a.push(`trusted=${c.trusted.join(',')}`);
  if (c.ports && c.ports.length) a.push(`ports=${c.ports.join(',')}`);
  return a;
}

/** insmod with the backend configuration plus raw `name=value` module arguments. */
export function insmod(c: BackendConfig = {}, extra: string[] = []) {
  const r = sh('insmod', [koPath(), ...paramArgs(c), ...extra]);
  if (r.status !== 0) throw new Error(`insmod failed (${r.status}): ${r.stderr.trim()}`);
}

/** One rmmod attempt: `busy` when the kernel refused it because the module is in use. */
export function rmmodOnce(): { ok: boolean; busy: boolean; stderr: string } {
  const r = sh('rmmod', ['toa']);
  return { ok: r.status === 0, busy: r.status !== 0 && /in use|busy/i.test(r.stderr), stderr: r.stderr.trim() };
}

/**
 * rmmod retried every 10 ms while the module is in use (a TOA socket whose
 * close is still being finished): how many ms it took, or null if it was
 * still in use after `ms`. Any other failure throws.
 */
export async function rmmodWithin(ms: number): Promise<number | null> {
  const t0 = Date.now();
  for (;;) {
    const r = rmmodOnce();
    if (r.ok) return Date.now() - t0;
    if (!r.busy) throw new Error(`rmmod failed: ${r.stderr}`);
    if (Date.now() - t0 > ms) return null;
    await new Promise((res) => setTimeout(res, 10));
  }
}

/** rmmod, retrying while a getsockopt in flight holds a module reference. */
export function rmmod({ attempts = 50 } = {}) {
  for (let i = 0; i < attempts; i++) {
    const r = sh('rmmod', ['toa']);
    if (r.status === 0) return;
    if (!/in use|busy/i.test(r.stderr)) throw new Error(`rmmod failed (${r.status}): ${r.stderr.trim()}`);
    execFileSync('sleep', ['0.05']);
  }
  throw new Error(`rmmod: module still in use after ${attempts} attempts`);
}

export function setParam(name: string, value: string) {
  // a newline makes even the empty value a real write the setter sees
  fs.writeFileSync(`/sys/module/toa/parameters/${name}`, `${value}\n`);
}

export function getParam(name: string): string {
  return fs.readFileSync(`/sys/module/toa/parameters/${name}`, 'utf8').trim();
}

/** /proc/net/toa_stats (or a copy read elsewhere): each counter summed over CPUs, plus the gauges. */
export function stats(text = fs.readFileSync('/proc/net/toa_stats', 'utf8')): Record<string, number> {
  const out: Record<string, number> = {};
  const lines = text.trim().split('\n').slice(1);
  for (const line of lines) {
    const [name, ...vals] = line.trim().split(/\s+/);
    out[name] = vals.reduce((s, v) => s + Number(v), 0);
  }
  return out;
}

export function delta(before: Record<string, number>, after: Record<string, number>) {
  const d: Record<string, number> = {};
  for (const k of Object.keys(after)) d[k] = after[k] - (before[k] ?? 0);
  return d;
}

/** Data lines of /proc/net/toa_table (header removed). */
export function tableEntries(): string[] {
  return fs.readFileSync('/proc/net/toa_table', 'utf8').trim().split('\n').slice(1).filter(Boolean);
}

/** A TcpExt counter of /proc/net/netstat (SyncookiesRecv, TCPFastOpenPassive...). */
export function netstat(name: string): number {
  const lines = fs.readFileSync('/proc/net/netstat', 'utf8').split('\n');
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const k = lines[i].split(/\s+/).indexOf(name);
    if (k > 0) return Number(lines[i + 1].split(/\s+/)[k]);
  }
  throw new Error(`no ${name} in /proc/net/netstat`);
}

/** Kernel log since boot. */
export function kernelLog(): string {
  return execFileSync('dmesg', [], { encoding: 'utf8', maxBuffer: 64 << 20 });
}

/** Lines showing the kernel complained (oops, BUG, WARNING, lockdep, KASAN...). */
export function kernelTrouble(log = kernelLog()): string[] {
  return log.split('\n').filter((l) =>
    /\b(Oops|BUG:|WARNING:|Call Trace|general protection|KASAN|KFENCE|UBSAN|lockdep|soft lockup|hung task|refcount_t)/.test(l));
}

/** The kmod backend for the shared behaviour suite. */
export const kmodBackend: Backend = {
  name: `toa.ko on ${os.release()}`,
  async enable(c: BackendConfig) {
    if (!loaded()) insmod(c);
    setParam('ipv4_kinds', (c.ipv4Kinds ?? [200]).join(','));
    setParam('ipv6_kinds', (c.ipv6Kinds ?? [253]).join(','));
    setParam('trusted', (c.trusted ?? []).join(','));
    setParam('ports', (c.ports ?? []).join(','));
  },
  async disable() {
    if (loaded()) rmmod();
  },
};
