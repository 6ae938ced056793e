// Builds kmod/ (and the harness's self-test module) out of tree for one
// kernel: sources copied to .cache/kmod/build/<name>-<kver>-<pid>/src first
// (parallel builds never share a tree), reused while sources, kernel
// packages and compiler are the same,
// `make -C <headers> M=<copy> modules` with that kernel's own compiler (in
// the suite's chroot when the host lacks it), the whole log kept. Any
// compiler warning fails the build; the module lands in
// .cache/kmod/<kver>/toa.ko, where test/spec/kmod.ts looks for it.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { cacheRoot, projectRoot, sh } from './kernels.mjs';

function copySources(dst) {
  const src = path.join(projectRoot, 'kmod');
  fs.mkdirSync(path.join(dst, 'uapi'), { recursive: true });
  for (const f of fs.readdirSync(src)) {
    if (/\.(c|h)$/.test(f) || f === 'Kbuild' || f === 'Makefile') fs.copyFileSync(path.join(src, f), path.join(dst, f));
  }
  fs.copyFileSync(path.join(src, 'uapi/toa.h'), path.join(dst, 'uapi/toa.h'));
}

/**
 * In a chroot: the project tree and /proc bound at the same paths (objtool
 * needs /proc). The mounts live in a private mount namespace that dies with
 * the build, so a killed build leaves no bind of the project inside .cache
 * (where `rm -rf .cache` would follow it) and concurrent builds never
 * unmount each other's tree.
 */
function makeInChroot(chroot, args) {
  const script = 'mkdir -p "$1$2" && mount --bind "$2" "$1$2" && mount -t proc proc "$1/proc" && c=$1 && shift 2 && exec chroot "$c" make "$@"';
  return sh('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', chroot, projectRoot, ...args],
    { allowFail: true, timeoutMs: 900_000 });
}

/**
 * Builds the module whose sources `copy(dir)` puts in a scratch tree, for
 * kernel `k`; the module `name`.ko lands at `ko`.
 * -> { status: 'ok'|'failed', ko, ms, log, warnings }
 */
function buildModule(k, { name, copy, ko, chroot, logFile }) {
  const t0 = Date.now();
  // per process: concurrent matrix runs never build in the same tree
  const work = path.join(cacheRoot, 'kmod', 'build', `${name}-${k.kver}-${process.pid}`, 'src');
  fs.rmSync(work, { recursive: true, force: true });
  copy(work);
  const args = ['-C', k.headersDir, `M=${work}`, ...(k.makeArgs ?? []), 'modules'];
  // the same sources for the same kernel packages and compiler: the module
  // built before (a prepare-ahead run, or the last run) is this one
  const stamp = createHash('sha256').update(JSON.stringify([k.kver, k.packages?.headers, k.makeArgs, chroot ?? null]));
  for (const f of fs.readdirSync(work, { recursive: true }).sort()) {
    const full = path.join(work, f);
    if (fs.statSync(full).isFile()) stamp.update(`${f}\0`).update(fs.readFileSync(full));
  }
  const digest = stamp.digest('hex');
  if (fs.existsSync(ko) && fs.existsSync(`${ko}.stamp`) && fs.readFileSync(`${ko}.stamp`, 'utf8') === digest) {
    if (logFile) fs.copyFileSync(`${ko}.log`, logFile);
    fs.rmSync(path.dirname(work), { recursive: true, force: true });
    return { status: 'ok', ko, ms: Date.now() - t0, warnings: [], cached: true };
  }
  const r = chroot ? makeInChroot(chroot, args) : sh('make', args, { allowFail: true, timeoutMs: 900_000 });
  const log = `$ ${chroot ? `chroot ${chroot} ` : ''}make ${args.join(' ')}\n${r.stdout}${r.stderr}`;
  if (logFile) fs.writeFileSync(logFile, log);
  const warnings = log.split('\n').filter((l) => /warning:/i.test(l));
  const built = r.status === 0 && fs.existsSync(path.join(work, `${name}.ko`));
  const ok = built && !warnings.length;
  if (ok) {
    fs.mkdirSync(path.dirname(ko), { recursive: true });
    fs.copyFileSync(path.join(work, `${name}.ko`), `${ko}.${process.pid}`);
    fs.renameSync(`${ko}.${process.pid}`, ko);
    fs.writeFileSync(`${ko}.log`, log);
    fs.writeFileSync(`${ko}.stamp`, digest);
  } else {
    // a stale module from an earlier build must never be what the tests load
    for (const f of [ko, `${ko}.stamp`]) fs.rmSync(f, { force: true });
  }
  fs.rmSync(path.dirname(work), { recursive: true, force: true });
  return { status: ok ? 'ok' : 'failed', ko: ok ? ko : null, ms: Date.now() - t0, warnings, log: ok ? undefined : log.slice(-3000) };
}

/** -> { status: 'absent'|'ok'|'failed', ko, ms, log, warnings } */
export function buildKmod(k, { chroot, logFile } = {}) {
  if (!fs.existsSync(path.join(projectRoot, 'kmod/Makefile'))) return { status: 'absent', ko: null, ms: 0 };
  return buildModule(k, { name: 'toa', copy: copySources, ko: path.join(cacheRoot, 'kmod', k.kver, 'toa.ko'), chroot, logFile });
}

/** The harness's detector self-test module (selftest/toa_selftest.c) for `k`. */
export function buildSelftest(k, { chroot, logFile } = {}) {
  const src = path.join(projectRoot, 'test/support/guest/selftest');
  const copy = (dst) => fs.cpSync(src, dst, { recursive: true });
  return buildModule(k, { name: 'toa_selftest', copy, ko: path.join(cacheRoot, 'guest', 'selftest', k.kver, 'toa_selftest.ko'), chroot, logFile });
}
