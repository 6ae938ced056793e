// Builds kmod/ out of tree for one kernel: sources copied to
// .cache/kmod/build/<kver>/src first (parallel builds never share a tree),
// `make -C <headers> M=<copy> modules` with that kernel's own compiler (in
// the suite's chroot when the host lacks it), the whole log kept. Any
// compiler warning fails the build; the module lands in
// .cache/kmod/<kver>/toa.ko, where test/spec/kmod.ts looks for it.
import fs from 'node:fs';
import path from 'node:path';
import { cacheRoot, projectRoot, sh } from './kernels.mjs';

function copySources(dst) {
  const src = path.join(projectRoot, 'kmod');
  fs.rmSync(dst, { recursive: true, force: true });
  fs.mkdirSync(path.join(dst, 'uapi'), { recursive: true });
  for (const f of fs.readdirSync(src)) {
    if (/\.(c|h)$/.test(f) || f === 'Kbuild' || f === 'Makefile') fs.copyFileSync(path.join(src, f), path.join(dst, f));
  }
  fs.copyFileSync(path.join(src, 'uapi/toa.h'), path.join(dst, 'uapi/toa.h'));
}

function isMounted(dir) {
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === dir);
}

/** In a chroot: the project tree and /proc bound at the same paths (objtool needs /proc). */
function makeInChroot(chroot, args) {
  const binds = [[projectRoot, path.join(chroot, projectRoot), ['--bind']], ['proc', path.join(chroot, 'proc'), ['-t', 'proc']]];
  const mounted = [];
  try {
    for (const [from, to, how] of binds) {
      fs.mkdirSync(to, { recursive: true });
      if (!isMounted(to)) {
        sh('mount', [...how, from, to]);
        mounted.push(to);
      }
    }
    return sh('chroot', [chroot, 'make', ...args], { allowFail: true, timeoutMs: 900_000 });
  } finally {
    for (const m of mounted.reverse()) sh('umount', [m], { allowFail: true });
  }
}

/** -> { status: 'absent'|'ok'|'failed', ko, ms, log, warnings } */
export function buildKmod(k, { chroot, logFile } = {}) {
  if (!fs.existsSync(path.join(projectRoot, 'kmod/Makefile'))) return { status: 'absent', ko: null, ms: 0 };
  const t0 = Date.now();
  // per process: concurrent matrix runs never build in the same tree
  const work = path.join(cacheRoot, 'kmod', 'build', `${k.kver}-${process.pid}`, 'src');
  const ko = path.join(cacheRoot, 'kmod', k.kver, 'toa.ko');
  copySources(work);
  const args = ['-C', k.headersDir, `M=${work}`, 'modules'];
  const r = chroot ? makeInChroot(chroot, args) : sh('make', args, { allowFail: true, timeoutMs: 900_000 });
  const log = `$ ${chroot ? `chroot ${chroot} ` : ''}make ${args.join(' ')}\n${r.stdout}${r.stderr}`;
  if (logFile) fs.writeFileSync(logFile, log);
  const warnings = log.split('\n').filter((l) => /warning:/i.test(l));
  const built = r.status === 0 && fs.existsSync(path.join(work, 'toa.ko'));
  if (built && !warnings.length) {
    fs.mkdirSync(path.dirname(ko), { recursive: true });
    fs.copyFileSync(path.join(work, 'toa.ko'), `${ko}.${process.pid}`);
    fs.renameSync(`${ko}.${process.pid}`, ko);
  }
  // a stale module from an earlier build must never be what the tests load
  if (!(built && !warnings.length)) fs.rmSync(ko, { force: true });
  fs.rmSync(path.dirname(work), { recursive: true, force: true });
  const ok = built && !warnings.length;
  return { status: ok ? 'ok' : 'failed', ko: ok ? ko : null, ms: Date.now() - t0, warnings, log: ok ? undefined : log.slice(-3000) };
}
