// Fetches Debian kernels (image + headers) for the guest matrix into
// .cache/kernels without touching the machine's apt configuration: every
// suite gets a private APT_CONFIG (own sources.list, lists, cache, no dpkg
// status), ABI names are resolved through the meta-packages on every run,
// packages are fetched with `apt-get download` and unpacked with `dpkg -x`.
import { spawnSync } from 'node:child_process';
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
 * current ABI; `chroot` marks suites whose headers need that suite's own
 * compiler and glibc (built inside a debootstrap chroot).
 */
export const KERNELS = [
  { id: '5.10', suite: 'bullseye', image: 'linux-image-amd64', headers: 'linux-headers-amd64',
    sources: [`${MIRROR} bullseye main`, `${SECURITY} bullseye-security main`] },
  { id: '6.1', suite: 'bookworm', image: 'linux-image-amd64', headers: 'linux-headers-amd64',
    sources: [`${MIRROR} bookworm main`, `${MIRROR} bookworm-updates main`, `${SECURITY} bookworm-security main`] },
  { id: '6.12', suite: 'bookworm', image: 'linux-image-6.12-amd64', headers: 'linux-headers-6.12-amd64',
    sources: [`${MIRROR} bookworm main`, `${MIRROR} bookworm-updates main`, `${SECURITY} bookworm-security main`] },
  { id: 'sid', suite: 'sid', image: 'linux-image-amd64', headers: 'linux-headers-amd64',
    sources: [`${MIRROR} sid main`], chroot: true },
];

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

function aptConfig(kernel) {
  // suites sharing sources share one private apt state
  const key = `${kernel.suite}-${Buffer.from(kernel.sources.join('|')).toString('base64url').slice(0, 8)}`;
  const dir = path.join(kernelsDir, 'apt', key);
  for (const d of ['lists/partial', 'cache/archives/partial', 'debs']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.writeFileSync(path.join(dir, 'sources.list'),
    kernel.sources.map((s) => `deb [signed-by=${KEYRING}] ${s}`).join('\n') + '\n');
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
    'APT::Architecture "amd64";',
    'APT::Architectures { "amd64"; };',
    'Acquire::Languages "none";',
    'Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";',
    '',
  ].join('\n'));
  return { dir, env: { APT_CONFIG: conf } };
}

const updated = new Set();

function aptUpdate(apt) {
  if (updated.has(apt.dir)) return;
  sh('apt-get', ['-q', 'update'], { env: apt.env, timeoutMs: 300_000 });
  updated.add(apt.dir);
}

/** `apt-cache show` of the candidate: { Package, Version, Depends: [names] }. */
function showPackage(apt, name) {
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
  const image = showPackage(apt, imageName);
  // headers: the arch tree, its -common tree, kbuild (and nothing else linux-*)
  const headers = [];
  const todo = [`linux-headers-${kver}`];
  while (todo.length) {
    const p = showPackage(apt, todo.shift());
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
  const pkgs = [r.image, ...r.headers].map((p) => `${p.name}=${p.version}`);
  const have = fs.existsSync(stamp) ? JSON.parse(fs.readFileSync(stamp, 'utf8')) : null;
  if (!have || have.join() !== pkgs.join()) {
    log(`fetching ${pkgs.join(' ')}`);
    fs.rmSync(path.join(root, '..'), { recursive: true, force: true });
    fs.mkdirSync(root, { recursive: true });
    const debs = path.join(r.apt.dir, 'debs');
    sh('apt-get', ['-q', 'download', ...pkgs], { env: r.apt.env, cwd: debs, timeoutMs: 600_000 });
    for (const p of [r.image, ...r.headers]) {
      const deb = fs.readdirSync(debs).find((f) => f.startsWith(`${p.name}_${p.version.replace(/:/g, '%3a')}_`));
      if (!deb) throw new HarnessError('ENOPKG', `downloaded ${p.name} ${p.version} not found in ${debs}`);
      sh('dpkg', ['-x', path.join(debs, deb), root]);
    }
    fs.writeFileSync(stamp, JSON.stringify(pkgs));
  }
  const modDir = findFirst([path.join(root, 'lib/modules', r.kver), path.join(root, 'usr/lib/modules', r.kver)]);
  if (!modDir) throw new HarnessError('ENOENT', `no modules directory for ${r.kver} in ${root}`);
  const modBase = path.resolve(modDir, '../../..');
  if (!fs.existsSync(path.join(modDir, 'modules.dep.bin'))) sh('depmod', ['-b', modBase, r.kver]);
  const vmlinuz = findFirst([path.join(root, 'boot', `vmlinuz-${r.kver}`), path.join(modDir, 'vmlinuz')]);
  if (!vmlinuz) throw new HarnessError('ENOENT', `no vmlinuz for ${r.kver} in ${root}`);
  const headersDir = findFirst([path.join(root, 'usr/src', `linux-headers-${r.kver}`)]);
  if (!headersDir) throw new HarnessError('ENOENT', `no headers tree linux-headers-${r.kver} in ${root}`);
  // unpacked trees include their -common half by absolute path
  const mk = path.join(headersDir, 'Makefile');
  const text = fs.readFileSync(mk, 'utf8');
  const fixed = text.replace(/^include \/usr\/src\//m, `include ${root}/usr/src/`);
  if (fixed !== text) fs.writeFileSync(mk, fixed);
  return {
    id: kernel.id, suite: kernel.suite, kver: r.kver, root, modDir, modBase, vmlinuz, headersDir,
    packages: { image: `${r.image.name} ${r.image.version}`, headers: r.headers.map((h) => `${h.name} ${h.version}`), meta: r.meta.image },
    fetchMs: Date.now() - t0,
  };
}
