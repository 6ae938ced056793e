// Processes, cgroups and BPF attachments the bench creates, and the promise
// that every one of them is gone when the bench exits (normally, by an
// error, or by Ctrl-C).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cacheDir = path.join(root, '.cache', 'bench');
const require = createRequire(import.meta.url);

export class BenchError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

const cleanups = [];
/** Registers a synchronous undo step; they run last-in first-out. */
export function onCleanup(fn) {
  cleanups.push(fn);
  return () => {
    const i = cleanups.indexOf(fn);
    if (i >= 0) cleanups.splice(i, 1);
  };
}
export function cleanupAll() {
  while (cleanups.length) {
    const fn = cleanups.pop();
    try { fn(); } catch (e) { process.stderr.write(`bench cleanup: ${e.message}\n`); }
  }
}
process.on('exit', cleanupAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { cleanupAll(); process.exit(128 + os.constants.signals[sig]); });
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

export function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.error) throw new BenchError('ESPAWN', `${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new BenchError('ECMD', `${cmd} ${args.join(' ')} exited ${r.status}: ${(r.stderr || '').trim()}`);
  return r.stdout;
}

/** The package's compiled API (dist/cjs): `npm run bench` runs plain node, no TypeScript loader. */
export function distModule(name) {
  return require(path.join(root, 'dist', 'cjs', name));
}

/**
 * Fails unless dist/ and the addon are at least as new as their sources:
 * benchmarking stale code would report numbers for code nobody has.
 */
export function checkBuilt() {
  const newest = (dir, re) => Math.max(0, ...fs.readdirSync(dir, { recursive: true })
    .filter((f) => re.test(f)).map((f) => fs.statSync(path.join(dir, f)).mtimeMs));
  const addon = path.join(root, 'build', 'Release', 'toa.node');
  if (!fs.existsSync(addon)) throw new BenchError('ENOBUILD', `${addon} is missing: run npm run build first`);
  if (newest(path.join(root, 'native'), /\.(cc|h)$/) > fs.statSync(addon).mtimeMs) {
    throw new BenchError('ESTALE', 'native/ is newer than build/Release/toa.node: run npm run build first');
  }
  const dist = path.join(root, 'dist', 'cjs', 'lookup.js');
  if (!fs.existsSync(dist) || newest(path.join(root, 'src'), /\.ts$/) > newest(path.join(root, 'dist', 'cjs'), /\.js$/)) {
    throw new BenchError('ESTALE', 'src/ is newer than dist/: run npm run build first');
  }
}

/** Compiles toaprobe and the client option writers into .cache/bench (a few seconds, once per change). */
export function buildTools() {
  fs.mkdirSync(cacheDir, { recursive: true });
  const src = path.join(root, 'bench', 'c');
  const out = {
    probe: path.join(cacheDir, 'toaprobe'),
    client4: path.join(cacheDir, 'toa_client4.bpf.o'),
    client6: path.join(cacheDir, 'toa_client6.bpf.o'),
  };
  const stale = (o, s) => !fs.existsSync(o) || fs.statSync(s).mtimeMs > fs.statSync(o).mtimeMs;
  const probeSrc = path.join(src, 'toaprobe.c');
  if (stale(out.probe, probeSrc)) sh('gcc', ['-O2', '-Wall', '-Wextra', '-o', out.probe, probeSrc]);
  const bpfSrc = path.join(src, 'toa_client.bpf.c');
  const multiarch = sh('gcc', ['-print-multiarch']).trim();
  for (const [o, v6] of [[out.client4, 0], [out.client6, 1]]) {
    if (stale(o, bpfSrc)) {
      sh('clang', ['-O2', '-g', '-target', 'bpf', '-idirafter', `/usr/include/${multiarch}`, '-Wall',
        `-DTOA_V6=${v6}`, '-c', bpfSrc, '-o', o]);
    }
  }
  return out;
}

export function cgroup2Root() {
  for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mnt, type] = line.split(' ');
    if (type === 'cgroup2') return mnt.replace(/\\040/g, ' ');
  }
  throw new BenchError('ENOCGROUP2', 'no cgroup2 filesystem in /proc/mounts');
}

/** A cgroup of our own under the cgroup2 mount (never the root itself). */
export function makeCgroup(tag) {
  const dir = path.join(cgroup2Root(), `toa-bench-${tag}-${process.pid}`);
  fs.mkdirSync(dir);
  onCleanup(() => {
    for (let i = 0; i < 200 && fs.existsSync(dir); i++) {
      try {
        // anything left (a child not yet reaped) goes back to our own cgroup
        for (const pid of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
          try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
        }
        fs.rmdirSync(dir);
      } catch (e) {
        if (e.code !== 'EBUSY') throw e;
        spawnSync('sleep', ['0.02']);
      }
    }
  });
  return dir;
}

/** A private bpffs so pins never collide with a real installation or another suite. */
export function makeBpffs() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'toa-bench-bpffs-'));
  sh('mount', ['-t', 'bpf', 'bpf', dir]);
  onCleanup(() => {
    spawnSync('umount', [dir]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** node-toa's eBPF backend on `cgroup`, via its programmatic API (src/bpf). */
export async function attachBackend(cgroup, bpffs) {
  const bpf = distModule('bpf/index.js');
  const pinDir = path.join(bpffs, 'node-toa');
  const object = path.join(root, 'bpf', 'dist', 'toa.bpf.o');
  if (!fs.existsSync(object)) throw new BenchError('ENOBUILD', `${object} is missing: run npm run build:bpf`);
  // synchronous undo is needed from 'exit'; bpftool detach is what bpf.detach() runs
  const undo = onCleanup(() => {
    const status = spawnSync('bpftool', ['-j', 'cgroup', 'show', cgroup], { encoding: 'utf8' });
    for (const p of JSON.parse(status.stdout || '[]')) {
      spawnSync('bpftool', ['cgroup', 'detach', cgroup, p.attach_type, 'id', String(p.id)]);
    }
  });
  const st = await bpf.attach({ cgroup, pinDir, object, ipv4Kinds: [200], ipv6Kinds: [253], trusted: [] });
  if (!st.cgroups.includes(cgroup)) throw new BenchError('EATTACH', `backend not attached to ${cgroup}: ${JSON.stringify(st.attachments)}`);
  return {
    pinDir,
    counters: async () => (await bpf.status({ pinDir })).counters,
    detach: async () => { await bpf.detach({ pinDir }); undo(); },
  };
}

/** The option writer (bench/c/toa_client.bpf.c) on the load generator's cgroup. */
export function attachClientOption(cgroup, object, bpffs, tag) {
  const pin = path.join(bpffs, `client-${tag}`);
  sh('bpftool', ['prog', 'load', object, pin, 'type', 'sockops']);
  sh('bpftool', ['cgroup', 'attach', cgroup, 'sock_ops', 'pinned', pin, 'multi']);
  const undo = () => {
    spawnSync('bpftool', ['cgroup', 'detach', cgroup, 'sock_ops', 'pinned', pin]);
    fs.rmSync(pin, { force: true });
  };
  const remove = onCleanup(undo);
  return () => { undo(); remove(); };
}

/**
 * A child that talks in lines. Started inside `cgroup` (if given) before it
 * runs a single instruction of its own, so every socket it opens is covered.
 */
export class LineProc {
  constructor(cmd, args, { cgroup, env, stdio } = {}) {
    const argv = cgroup
      ? ['sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, cmd, ...args]]
      : [cmd, args];
    this.proc = spawn(argv[0], argv[1], { stdio: stdio ?? ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    this.stderr = '';
    this.proc.stderr?.on('data', (d) => { this.stderr += d; });
    this.queue = [];
    this.waiters = [];
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, sig) => {
      this.dead = { code, sig };
      for (const w of this.waiters.splice(0)) w.reject(new BenchError('ECHILD', `${cmd} exited (${code ?? sig}): ${this.stderr.trim()}`));
      resolve(this.dead);
    }));
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      const w = this.waiters.shift();
      if (w) w.resolve(line);
      else this.queue.push(line);
    });
    this.undo = onCleanup(() => { if (!this.dead) this.proc.kill('SIGKILL'); });
  }

  line(timeoutMs = 60000) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.dead) return Promise.reject(new BenchError('ECHILD', `child exited: ${this.stderr.trim()}`));
    return new Promise((resolve, reject) => {
      const w = {
        resolve: (l) => { clearTimeout(t); resolve(l); },
        reject: (e) => { clearTimeout(t); reject(e); },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new BenchError('ETIMEDOUT', `no answer from child within ${timeoutMs} ms: ${this.stderr.trim()}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Sends a command and returns the answer line; "err ..." answers throw. */
  async ask(cmd, timeoutMs) {
    this.proc.stdin.write(`${cmd}\n`);
    const l = await this.line(timeoutMs);
    if (l.startsWith('err')) throw new BenchError('ECHILD', `${cmd}: ${l}`);
    return l;
  }

  async stop(timeoutMs = 5000) {
    if (!this.dead) {
      this.proc.stdin.end();
      const t = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
      await this.exited;
      clearTimeout(t);
    }
    this.undo();
    return this.dead;
  }
}

/**
 * Bytes held by slab caches right now (active objects x object size): all
 * of them, and the generic kmalloc-* ones (including -cg- and -rcl-).
 */
export function slabBytes() {
  let total = 0;
  let kmalloc = 0;
  const caches = {};
  for (const line of fs.readFileSync('/proc/slabinfo', 'utf8').split('\n').slice(2)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    const bytes = Number(f[1]) * Number(f[3]);
    caches[f[0]] = bytes;
    total += bytes;
    if (/^kmalloc-(cg-|rcl-)?\d+k?$/.test(f[0])) kmalloc += bytes;
  }
  return { total, kmalloc, caches };
}
