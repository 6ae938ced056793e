// arm64 user space for the arm64 guests. The host's root (shared over 9p
// into the amd64 guests) holds x86 binaries, so an arm64 guest instead
// mounts a root of Debian arm64 packages unpacked here with `dpkg -x`: the
// Depends closure of PACKAGES, resolved by apt with a private configuration
// (arm64 only, empty dpkg status) — nothing is installed, no maintainer
// script runs, the machine's apt and dpkg never hear of arm64.
//
// Node comes from trixie (20.19.2): the test runner (vitest 4 on vite 8)
// needs Node >= 20.19, bookworm's nodejs is 18.20.4. The project tree is
// overlaid on top of this root in the guest, with a layer of the arm64
// builds of the npm packages whose x64 builds node_modules holds
// (rolldown's binding, lightningcss), fetched with `npm pack`.
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { HarnessError, aptConfig, aptGet, aptUpdate, cacheRoot, projectRoot, sh } from './kernels.mjs';

const MIRROR = 'http://deb.debian.org/debian';
const SUITE = 'trixie';
/** What the job and the tests run: node, the shell tools (sh = dash, mount), the LB emulator's tcpdump, bpftool. */
export const PACKAGES = [
  'nodejs', 'busybox-static', 'bash', 'dash', 'coreutils', 'util-linux', 'mount', 'procps', 'findutils', 'grep', 'sed',
  'gzip', 'tar', 'kmod', 'iproute2', 'bpftool', 'tcpdump', 'python3',
];

const arm64Dir = path.join(cacheRoot, 'arm64');

/** Packages (name=version) apt would install into an empty arm64 system for PACKAGES. */
function closure(apt) {
  const out = sh('apt-get', ['-s', '-q', '--no-install-recommends', 'install', ...PACKAGES], { env: apt.env }).stdout;
  const pkgs = [...out.matchAll(/^Inst (\S+) \((\S+) /gm)].map((m) => ({ name: m[1].replace(/:arm64$/, ''), version: m[2] }));
  if (!pkgs.length) throw new HarnessError('ENOPKG', `apt resolved nothing for ${PACKAGES.join(' ')}:\n${out.slice(-2000)}`);
  return pkgs.sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * The unpacked arm64 root (cached while the package versions stay the
 * same). -> { root, packages, node }
 */
export function ensureArm64Root({ log = () => {} } = {}) {
  const apt = aptConfig({ suite: SUITE, sources: [`${MIRROR} ${SUITE} main`], arch: 'arm64' });
  aptUpdate(apt);
  const pkgs = closure(apt);
  const list = pkgs.map((p) => `${p.name}=${p.version}`);
  const dir = path.join(arm64Dir, `root-${SUITE}-${createHash('sha256').update(list.join('\n')).digest('hex').slice(0, 12)}`);
  const root = path.join(dir, 'root');
  const node = pkgs.find((p) => p.name === 'nodejs')?.version;
  if (fs.existsSync(path.join(dir, 'done'))) {
    writeEtc(root);
    return { root, packages: list, node };
  }
  log(`unpacking ${list.length} arm64 packages (${SUITE}) into ${root}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(root, { recursive: true });
  // merged /usr, as a trixie system has it
  for (const d of ['bin', 'sbin', 'lib']) {
    fs.mkdirSync(path.join(root, 'usr', d), { recursive: true });
    fs.symlinkSync(`usr/${d}`, path.join(root, d));
  }
  aptGet(apt, ['-q', '-y', '-d', '--no-install-recommends', 'install', ...PACKAGES], { timeoutMs: 900_000 });
  const archives = path.join(apt.dir, 'cache', 'archives');
  const files = fs.readdirSync(archives);
  for (const p of pkgs) {
    const deb = files.find((f) => f.startsWith(`${p.name}_${p.version.replace(/:/g, '%3a')}_`));
    if (!deb) throw new HarnessError('ENOPKG', `${p.name} ${p.version} not downloaded into ${archives}`);
    sh('dpkg-deb', ['-x', path.join(archives, deb), root]);
  }
  for (const d of ['proc', 'sys', 'dev', 'run', 'tmp', 'root', 'mnt/results', 'etc']) fs.mkdirSync(path.join(root, d), { recursive: true });
  fs.chmodSync(path.join(root, 'tmp'), 0o1777);
  writeEtc(root);
  if (!fs.existsSync(path.join(root, 'usr/bin/node'))) throw new HarnessError('ENOENT', `no usr/bin/node in ${root}`);
  fs.writeFileSync(path.join(dir, 'packages.json'), JSON.stringify(list, null, 1));
  fs.writeFileSync(path.join(dir, 'done'), '');
  return { root, packages: list, node };
}

/**
 * The accounts and names maintainer scripts would have made: tcpdump drops
 * its privileges to its own user, and refuses to run without it.
 */
function writeEtc(root) {
  fs.writeFileSync(path.join(root, 'etc/passwd'), ['root:x:0:0:root:/root:/bin/bash',
    'tcpdump:x:100:101::/nonexistent:/usr/sbin/nologin', 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin', ''].join('\n'));
  fs.writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\ntcpdump:x:101:\nnogroup:x:65534:\n');
  fs.writeFileSync(path.join(root, 'etc/hosts'), '127.0.0.1 localhost\n::1 localhost\n');
}

/**
 * A directory laid over the project tree in arm64 guests: for every npm
 * package in node_modules built for linux-x64, its linux-arm64 twin at the
 * same version. -> path of the layer
 */
export function ensureNpmLayer({ log = () => {} } = {}) {
  const nm = path.join(projectRoot, 'node_modules');
  const twins = [];
  const visit = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (!e.isDirectory() || e.name === '.bin') continue;
      const p = path.join(d, e.name);
      if (e.name.startsWith('@')) { visit(p); continue; }
      const pj = path.join(p, 'package.json');
      if (!fs.existsSync(pj)) continue;
      const meta = JSON.parse(fs.readFileSync(pj, 'utf8'));
      if (meta.cpu?.includes('x64') && meta.os?.includes('linux') && /x64/.test(meta.name)) {
        twins.push({ name: meta.name.replace('x64', 'arm64'), version: meta.version, rel: path.relative(projectRoot, p).replace('x64', 'arm64') });
      }
    }
  };
  visit(nm);
  const key = createHash('sha256').update(JSON.stringify(twins)).digest('hex').slice(0, 12);
  const layer = path.join(arm64Dir, `npm-${key}`);
  if (fs.existsSync(path.join(layer, '.done'))) return layer;
  log(`fetching arm64 builds of ${twins.map((t) => `${t.name}@${t.version}`).join(', ')}`);
  fs.rmSync(layer, { recursive: true, force: true });
  const packs = path.join(arm64Dir, 'npm-packs');
  fs.mkdirSync(packs, { recursive: true });
  for (const t of twins) {
    const out = sh('npm', ['pack', '--silent', `${t.name}@${t.version}`], { cwd: packs, timeoutMs: 300_000 }).stdout.trim().split('\n').pop();
    const dst = path.join(layer, t.rel);
    fs.mkdirSync(dst, { recursive: true });
    sh('tar', ['-xzf', path.join(packs, out), '-C', dst, '--strip-components=1']);
  }
  fs.writeFileSync(path.join(layer, '.done'), JSON.stringify(twins));
  return layer;
}

/**
 * Static arm64 libraries for cross-linking test helpers (the LB emulator's
 * lb-helper): bookworm's, like the cross compiler and its libc, so the
 * binary is self-contained and runs on any arm64 root. -> sysroot path
 */
export function ensureArm64Sysroot({ log = () => {} } = {}) {
  const sources = ['http://deb.debian.org/debian bookworm main'];
  const apt = aptConfig({ suite: 'bookworm', sources, arch: 'arm64' });
  aptUpdate(apt);
  const names = ['libbpf-dev', 'libelf-dev', 'zlib1g-dev', 'libzstd-dev'];
  const list = names.map((n) => `${n}=${sh('apt-cache', ['show', '--no-all-versions', n], { env: apt.env }).stdout.match(/^Version: (\S+)/m)[1]}`);
  const dir = path.join(arm64Dir, `sysroot-bookworm-${createHash('sha256').update(list.join('\n')).digest('hex').slice(0, 12)}`);
  if (fs.existsSync(path.join(dir, '.done'))) return dir;
  log(`unpacking ${list.join(' ')} (arm64) into ${dir}`);
  fs.rmSync(dir, { recursive: true, force: true });
  const debs = path.join(apt.dir, 'debs');
  fs.mkdirSync(debs, { recursive: true });
  aptGet(apt, ['-q', 'download', ...list], { cwd: debs, timeoutMs: 300_000 });
  for (const n of list) {
    const [name, version] = n.split('=');
    const deb = fs.readdirSync(debs).find((f) => f.startsWith(`${name}_${version.replace(/:/g, '%3a')}_arm64`));
    if (!deb) throw new HarnessError('ENOPKG', `${n} not downloaded into ${debs}`);
    sh('dpkg-deb', ['-x', path.join(debs, deb), dir]);
  }
  fs.writeFileSync(path.join(dir, '.done'), list.join('\n'));
  return dir;
}
