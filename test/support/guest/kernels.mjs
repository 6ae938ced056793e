// Fetches Debian kernels (image + headers) for the guest matrix into
// .cache/kernels without touching the machine's apt configuration: every
// suite gets a private APT_CONFIG (own sources.list, lists, cache, no dpkg
// status), ABI names are resolved through the meta-packages on every run,
// packages are fetched with `apt-get download` and unpacked with `dpkg -x`.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const cacheRoot = path.join(projectRoot, '.cache');
const kernelsDir = path.join(cacheRoot, 'kernels');
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
const MIRROR = 'http://deb.debian.org/debian';
const SECURITY = 'http://deb.debian.org/debian-security';

/**
 * The matrix. `image`/`headers` are meta-packages whose Depends name the
 * current ABI.
 */
export const KERNELS = [
  { id: '5.10', suite: 'bullseye', image: 'linux-image-amd64', headers: 'linux-headers-amd64',
    sources: [`${MIRROR} bullseye main`, `${SECURITY} bullseye-security main`] },
  { id: '6.1', suite: 'bookworm', image: 'linux-image-amd64', headers: 'linux-headers-amd64',
    sources: [`${MIRROR} bookworm main`, `${MIRROR} bookworm-updates main`, `${SECURITY} bookworm-security main`] },
  { id: '6.12', suite: 'bookworm', image: 'linux-image-6.12-amd64', headers: 'linux-headers-6.12-amd64',
    sources: [`${MIRROR} bookworm main`, `${MIRROR} bookworm-updates main`, `${SECURITY} bookworm-security main`] },
  { id: 'sid', suite: 'sid', image: 'linux-image-amd64', headers: 'linux-headers-amd64',
    sources: [`${MIRROR} sid main`] },
  // arm64 (Kunpeng, Graviton...): qemu-system-aarch64 -M virt, arm64 user
  // space (arm64-root.mjs), the module cross-built, a named subset of files
  { id: 'arm64-6.1', arch: 'arm64', suite: 'bookworm', image: 'linux-image-arm64', headers: 'linux-headers-arm64',
    sources: [`${MIRROR} bookworm main`, `${MIRROR} bookworm-updates main`, `${SECURITY} bookworm-security main`] },
  { id: 'arm64-6.12', arch: 'arm64', suite: 'bookworm', image: 'linux-image-6.12-arm64', headers: 'linux-headers-6.12-arm64',
    sources: [`${MIRROR} bookworm main`, `${MIRROR} bookworm-updates main`, `${SECURITY} bookworm-security main`] },
];

/**
 * What an arm64 guest runs (vitest file filters) unless --file says
 * otherwise: TCG emulating arm64 is too slow for the whole suite in the CI
 * budget. Chosen so that every arm64-specific path runs once per kernel:
 * the module's hooks and kprobe argument registers (behaviour table, kmod
 * lifecycle under load, NAT64 alloc == free in kmod-memory), the ops swap
 * from the kretprobe return handler and the module references it takes
 * (kmod-listener-ops: arm64's cmpxchg and atomics), the eBPF
 * backend's CO-RE relocations against arm64 BTF (bpf-behaviour,
 * bpf-lifecycle), the arm64 prebuilt addon (getters-*), the LB emulator's
 * cross-built helper (harness). What is left out, and why: README's kernel
 * table (scripts/kernel-table.mjs).
 */
export const ARM64_SUBSET = [
  'test/kernel/harness', 'test/kernel/kmod-behaviour', 'test/kernel/kmod-lifecycle', 'test/kernel/kmod-listener-ops',
  'test/kernel/kmod-memory', 'test/kernel/bpf-behaviour', 'test/kernel/bpf-lifecycle', 'test/kernel/getters-',
];
for (const k of KERNELS) if (k.arch === 'arm64') k.files = ARM64_SUBSET;

/** GNU triplets of Debian's cross toolchains (gcc-aarch64-linux-gnu). */
export const CROSS = { arm64: 'aarch64-linux-gnu', amd64: 'x86_64-linux-gnu' };

/** Debian architecture of the machine running the harness (builds, kbuild tools). */
export const HOST_ARCH = spawnSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).stdout?.trim() || 'amd64';

export class HarnessError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

export function sh(cmd, args, { env, cwd, input, allowFail = false, timeoutMs = 600_000, encoding = 'utf8' } = {}) {
  const r = spawnSync(cmd, args, {
    env: env ? { ...process.env, ...env } : process.env, cwd, encoding,
    input: typeof input === 'string' ? Buffer.from(input) : input,
    maxBuffer: 256 * 1024 * 1024, timeout: timeoutMs,
  });
  if (r.error) throw new HarnessError('ESPAWN', `${cmd}: ${r.error.message}`);
  if (r.status !== 0 && !allowFail) {
    throw new HarnessError('ECMD', `${cmd} ${args.join(' ')} exited ${r.status}:\n${String(r.stderr || r.stdout).trim().slice(-3000)}`);
  }
  return r;
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/**
 * Takes a lock file (several matrix runs, and the bench, may share the
 * machine and the cache) and returns its release. A lock whose owner died is
 * taken over. Past `deadline` (ms since the epoch) it gives up with EBUSY
 * (`err.owner` is the holder's pid); `onWait(owner)` is told once.
 */
export async function acquireLock(file, { onWait = () => {}, pollMs = 500, deadline = Infinity } = {}) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // Waiters queue up (a ticket each in <file>.queue, oldest first): the
  // guest slot goes round in arrival order instead of to whoever polls first.
  const queue = `${file}.queue`;
  let ticket = null;
  try {
    for (let waited = false; ;) {
      const first = firstInQueue(queue);
      if (ticket ? first === path.basename(ticket) : first === null) {
        try {
          fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
          break;
        } catch (e) {
          if (e.code !== 'EEXIST') throw e;
        }
      }
      let owner = 0;
      try { owner = Number(fs.readFileSync(file, 'utf8')) || 0; } catch { /* released meanwhile */ }
      if (owner && !pidAlive(owner)) {
        fs.rmSync(file, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        const err = new HarnessError('EBUSY', `${file} is held by pid ${owner}`);
        err.owner = owner;
        throw err;
      }
      if (!ticket) {
        fs.mkdirSync(queue, { recursive: true });
        ticket = path.join(queue, `${String(Date.now()).padStart(15, '0')}-${process.pid}`);
        fs.writeFileSync(ticket, '');
      }
      if (!waited) onWait(owner);
      waited = true;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  } finally {
    if (ticket) fs.rmSync(ticket, { force: true });
  }
  // Only our own lock: a holder presumed dead may have been replaced.
  return () => {
    if (fs.existsSync(file) && fs.readFileSync(file, 'utf8') === String(process.pid)) fs.rmSync(file, { force: true });
  };
}

/** The oldest ticket of a live waiter in `queue` (dead waiters' tickets are dropped), or null. */
function firstInQueue(queue) {
  let names;
  try {
    names = fs.readdirSync(queue).sort();
  } catch {
    return null;
  }
  for (const n of names) {
    if (pidAlive(Number(n.split('-')[1]))) return n;
    fs.rmSync(path.join(queue, n), { force: true });
  }
  return null;
}

/** Runs `fn` holding a lock file (see acquireLock). */
export async function withLock(file, fn, options) {
  const release = await acquireLock(file, options);
  try {
    return await fn();
  } finally {
    release();
  }
}

export const lockFile = (name) => path.join(cacheRoot, 'locks', `${name}.lock`);

/**
 * Private apt configuration for `sources` of `arch` (one architecture only:
 * the machine's own architectures are never touched).
 */
export function aptConfig({ suite, sources, arch = HOST_ARCH }) {
  // suites sharing sources share one private apt state
  const key = `${suite}-${arch === HOST_ARCH ? '' : `${arch}-`}${createHash('sha256').update(sources.join('|')).digest('hex').slice(0, 8)}`;
  const dir = path.join(kernelsDir, 'apt', key);
  for (const d of ['lists/partial', 'cache/archives/partial', 'debs']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.writeFileSync(path.join(dir, 'sources.list'),
    sources.map((s) => `deb [arch=${arch} signed-by=${KEYRING}] ${s}`).join('\n') + '\n');
  const conf = path.join(dir, 'apt.conf');
  fs.writeFileSync(conf, [
    `Dir::Etc::SourceList "${dir}/sources.list";`,
    'Dir::Etc::SourceParts "/dev/null";',
    'Dir::Etc::Preferences "/dev/null";',
    'Dir::Etc::PreferencesParts "/dev/null";',
    `Dir::State::Lists "${dir}/lists";`,
    'Dir::State::status "/dev/null";',
    `Dir::Cache "${dir}/cache";`,
    'APT::Sandbox::User "root";',
    `APT::Architecture "${arch}";`,
    `APT::Architectures { "${arch}"; };`,
    'Acquire::Languages "none";',
    // the mirror may be a frozen snapshot whose Valid-Until has passed
    'Acquire::Check-Valid-Until "false";',
    'Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";',
    '',
  ].join('\n'));
  return { dir, env: { APT_CONFIG: conf } };
}

const updated = new Set();

/**
 * apt-get with a private configuration, one at a time per configuration:
 * matrix runs and their prepare-ahead child share the lists and caches.
 */
export function aptGet(apt, args, options = {}) {
  return sh('flock', [path.join(apt.dir, '.lock'), 'apt-get', ...args], { ...options, env: apt.env });
}

export function aptUpdate(apt) {
  if (updated.has(apt.dir)) return;
  aptGet(apt, ['-q', 'update'], { timeoutMs: 300_000 });
  updated.add(apt.dir);
}

/** `apt-cache show` of the candidate: { Package, Version, Depends: [names] }. */
export function showPackage(apt, name) {
  const out = sh('apt-cache', ['show', '--no-all-versions', name], { env: apt.env }).stdout;
  const field = (f) => (new RegExp(`^${f}: (.*)$`, 'm').exec(out) ?? [])[1];
  if (!field('Version')) throw new HarnessError('ENOPKG', `${name} has no candidate`);
  const deps = (field('Depends') ?? '').split(',').map((d) => d.trim().split(/[\s|]/)[0]).filter(Boolean);
  return { name, version: field('Version'), depends: deps };
}

/** Image + headers package set for `kernel`, resolved through its meta-packages. */
export function resolveKernel(kernel) {
  const apt = aptConfig(kernel);
  aptUpdate(apt);
  const imgMeta = showPackage(apt, kernel.image);
  const imageName = imgMeta.depends.find((d) => /^linux-image-\d/.test(d));
  if (!imageName) throw new HarnessError('ENOPKG', `${kernel.image} ${imgMeta.version} depends on no linux-image-<abi>`);
  const kver = imageName.replace(/^linux-image-/, '').replace(/-unsigned$/, '');
  // newer suites split the image into linux-binary-/linux-modules-/linux-base-<abi>
  const image = [];
  const imgTodo = [imageName];
  const part = new RegExp(`^linux-(image|binary|modules|base)-${kver.replace(/[.+]/g, '\\$&')}(-unsigned)?$`);
  while (imgTodo.length) {
    const p = showPackage(apt, imgTodo.shift());
    image.push(p);
    for (const d of p.depends) if (part.test(d) && !image.some((x) => x.name === d) && !imgTodo.includes(d)) imgTodo.push(d);
  }
  // headers: the arch tree, its -common tree, kbuild (and nothing else
  // linux-*); kbuild's tools (fixdep, modpost) run on this machine, so a
  // foreign kernel takes them from this machine's architecture
  const hostApt = (kernel.arch ?? HOST_ARCH) === HOST_ARCH ? apt : aptConfig({ ...kernel, arch: HOST_ARCH });
  if (hostApt !== apt) aptUpdate(hostApt);
  const headers = [];
  const todo = [`linux-headers-${kver}`];
  while (todo.length) {
    const name = todo.shift();
    const p = showPackage(/^linux-kbuild-/.test(name) ? hostApt : apt, name);
    if (/^linux-kbuild-/.test(name)) p.apt = hostApt;
    headers.push(p);
    for (const d of p.depends) {
      if (/^linux-(headers|kbuild)-/.test(d) && !headers.some((h) => h.name === d) && !todo.includes(d)) todo.push(d);
    }
  }
  return { apt, kver, image, headers, meta: { image: `${kernel.image} ${imgMeta.version}` } };
}

function findFirst(paths) {
  return paths.find((p) => fs.existsSync(p));
}

/**
 * Resolves, downloads and unpacks one kernel. Returns everything the
 * harness needs: kver, vmlinuz, module base for depmod/modprobe (-b/-d),
 * headers tree, and the exact package versions.
 */
export function fetchKernel(kernel, { log = () => {} } = {}) {
  const t0 = Date.now();
  const r = resolveKernel(kernel);
  const root = path.join(kernelsDir, `${kernel.suite}-${r.kver}`, 'root');
  const stamp = path.join(root, '..', 'packages.json');
  const pkgs = [...r.image, ...r.headers].map((p) => `${p.name}=${p.version}`);
  const have = fs.existsSync(stamp) ? JSON.parse(fs.readFileSync(stamp, 'utf8')) : null;
  if (!have || have.join() !== pkgs.join()) {
    log(`fetching ${pkgs.join(' ')}`);
    fs.rmSync(path.join(root, '..'), { recursive: true, force: true });
    fs.mkdirSync(root, { recursive: true });
    const all = [...r.image, ...r.headers];
    for (const apt of new Set(all.map((p) => p.apt ?? r.apt))) {
      const mine = all.filter((p) => (p.apt ?? r.apt) === apt).map((p) => `${p.name}=${p.version}`);
      aptGet(apt, ['-q', 'download', ...mine], { cwd: path.join(apt.dir, 'debs'), timeoutMs: 600_000 });
    }
    for (const p of all) {
      const debs = path.join((p.apt ?? r.apt).dir, 'debs');
      const deb = fs.readdirSync(debs).find((f) => f.startsWith(`${p.name}_${p.version.replace(/:/g, '%3a')}_`));
      if (!deb) throw new HarnessError('ENOPKG', `downloaded ${p.name} ${p.version} not found in ${debs}`);
      sh('dpkg', ['-x', path.join(debs, deb), root]);
    }
    fs.writeFileSync(stamp, JSON.stringify(pkgs));
  }
  const modDir = findFirst([path.join(root, 'lib/modules', r.kver, 'kernel'), path.join(root, 'usr/lib/modules', r.kver, 'kernel')])?.replace(/\/kernel$/, '');
  if (!modDir) throw new HarnessError('ENOENT', `no modules directory for ${r.kver} in ${root}`);
  const modBase = path.resolve(modDir, '../../..');
  if (!fs.existsSync(path.join(modDir, 'modules.dep.bin'))) sh('depmod', ['-b', modBase, r.kver]);
  const vmlinuz = findFirst([path.join(root, 'boot', `vmlinuz-${r.kver}`), path.join(modDir, 'vmlinuz')]);
  if (!vmlinuz) throw new HarnessError('ENOENT', `no vmlinuz for ${r.kver} in ${root}`);
  const headersDir = findFirst([path.join(root, 'usr/src', `linux-headers-${r.kver}`)]);
  if (!headersDir) throw new HarnessError('ENOENT', `no headers tree linux-headers-${r.kver} in ${root}`);
  // unpacked trees name their -common half (and, since 7.x, the output tree) by absolute path
  const mk = path.join(headersDir, 'Makefile');
  const text = fs.readFileSync(mk, 'utf8');
  const fixed = text.replace(/^(include |KBUILD_OUTPUT=)\/usr\/src\//gm, `$1${root}/usr/src/`);
  if (fixed !== text) fs.writeFileSync(mk, fixed);
  return {
    id: kernel.id, arch: kernel.arch ?? HOST_ARCH, suite: kernel.suite, kver: r.kver, root, modDir, modBase, vmlinuz, headersDir,
    // out-of-tree modules for a foreign kernel: Debian's cross compiler
    makeArgs: kernel.arch && kernel.arch !== HOST_ARCH ? [`ARCH=${kernel.arch}`, `CROSS_COMPILE=${CROSS[kernel.arch]}-`] : [],
    packages: { image: r.image.map((p) => `${p.name} ${p.version}`).join(', '), headers: r.headers.map((h) => `${h.name} ${h.version}`), meta: r.meta.image },
    fetchMs: Date.now() - t0,
  };
}
