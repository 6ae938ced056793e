// Builds the prebuilt addons the npm tarball ships: prebuilds/linux-x64 and
// prebuilds/linux-arm64 (cross-compiled with Debian's aarch64-linux-gnu
// toolchain), named the way node-gyp-build looks them up at install and at
// run time. N-API (NAPI_VERSION 8 in binding.gyp), so one file per
// architecture serves every Node.js release the package supports.
//
//   node scripts/prebuild.mjs [--arch x64,arm64] [--force]
//
// Each architecture is built in its own scratch copy under .cache/prebuild/:
// prebuildify runs `node-gyp rebuild` in its cwd and moves the result away,
// which in the work tree would delete build/Release/toa.node while tests and
// QEMU guests are loading it. A lock serialises concurrent callers (the test
// files each call this script), and a stamp of the inputs makes a repeat call
// a no-op, so callers can ask for fresh prebuilds without paying for them.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync,
  rmSync, statSync, symlinkSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { arch as hostArch } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cacheDir = join(root, '.cache', 'prebuild');
const pkgName = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).name;
// The libc tag keeps node-gyp-build from offering these glibc binaries on
// musl (Alpine): there it finds no match and builds from source instead.
const prebuildFile = `${pkgName}.glibc.node`;
// The eBPF backend's loader, an executable beside the addon (see binding.gyp's
// toa-bpf target): src/bpf/loader.ts looks for it there.
const loaderFile = 'toa-bpf';

// ELF e_machine values, to refuse a binary built for the wrong target (a
// cross compiler silently missing from PATH would otherwise hand us the
// host compiler's output under the arm64 name).
const targets = {
  x64: { triplet: 'x86_64-linux-gnu', machine: 62 },
  arm64: { triplet: 'aarch64-linux-gnu', machine: 183 },
};

const LOCK_WAIT_MS = 300_000;
const BUILD_TIMEOUT_MS = 240_000;

function parseArgs(argv) {
  const opts = { archs: Object.keys(targets), force: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--force') opts.force = true;
    else if (argv[i] === '--arch' && argv[i + 1]) opts.archs = argv[++i].split(',');
    else fail(`unknown argument ${argv[i]} (usage: prebuild.mjs [--arch x64,arm64] [--force])`);
  }
  for (const a of opts.archs) if (!targets[a]) fail(`unsupported arch ${a}; known: ${Object.keys(targets).join(', ')}`);
  return opts;
}

class PrebuildError extends Error {}

function fail(message) {
  throw new PrebuildError(message);
}

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: BUILD_TIMEOUT_MS, ...options });
  if (r.error) fail(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) {
    fail(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}\n${r.stdout ?? ''}${r.stderr ?? ''}`);
  }
  return r.stdout;
}

// Node's headers: the ones next to this node binary when present (Debian and
// the official tarballs ship them), so a build needs no download.
function nodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = dirname(dirname(process.execPath));
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

function tools(arch) {
  const prefix = arch === hostArch() ? '' : `${targets[arch].triplet}-`;
  return { cc: `${prefix}gcc`, cxx: `${prefix}g++`, strip: `${prefix}strip` };
}

function sourceFiles() {
  const native = readdirSync(join(root, 'native'), { recursive: true }).sort()
    .map((f) => join('native', f)).filter((f) => statSync(join(root, f)).isFile());
  return ['binding.gyp', 'kmod/uapi/toa.h', 'scripts/prebuild.mjs', ...native];
}

// Everything that decides the bytes of a prebuild: sources, the script, the
// node-addon-api headers, the compiler.
function inputsHash(arch) {
  const h = createHash('sha256');
  for (const f of sourceFiles()) h.update(`${f}\0`).update(readFileSync(join(root, f)));
  h.update(readFileSync(join(root, 'node_modules', 'node-addon-api', 'package.json')));
  const { cxx } = tools(arch);
  h.update(run(cxx, ['--version']));
  return h.digest('hex');
}

const fileHash = (f) => createHash('sha256').update(readFileSync(f)).digest('hex');
const outputPath = (arch) => join(root, 'prebuilds', `linux-${arch}`, prebuildFile);
const loaderPath = (arch) => join(root, 'prebuilds', `linux-${arch}`, loaderFile);
const stampPath = (arch) => join(cacheDir, `stamp-${arch}.json`);

function upToDate(arch, inputs) {
  try {
    const stamp = JSON.parse(readFileSync(stampPath(arch), 'utf8'));
    return stamp.inputs === inputs && stamp.output === fileHash(outputPath(arch))
      && stamp.loader === fileHash(loaderPath(arch));
  } catch {
    return false;
  }
}

function elfMachine(file) {
  const b = readFileSync(file);
  if (b.readUInt32BE(0) !== 0x7f454c46) return -1;
  return b.readUInt16LE(18);
}

function build(arch) {
  const stage = join(cacheDir, `stage-${arch}`);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(join(stage, 'kmod'), { recursive: true });
  copyFileSync(join(root, 'binding.gyp'), join(stage, 'binding.gyp'));
  cpSync(join(root, 'native'), join(stage, 'native'), { recursive: true });
  cpSync(join(root, 'kmod', 'uapi'), join(stage, 'kmod', 'uapi'), { recursive: true });
  writeFileSync(join(stage, 'package.json'), JSON.stringify({ name: pkgName, private: true }));
  // binding.gyp resolves node-addon-api's include dir with require() from here.
  symlinkSync(join(root, 'node_modules'), join(stage, 'node_modules'));

  const { cc, cxx, strip } = tools(arch);
  // The addon alone: toa-bpf is built below by native/bpf/build.sh, which
  // links the target architecture's static libbpf (node-gyp would look for
  // the host's).
  const env = { ...process.env, CC: cc, CXX: cxx, GYP_DEFINES: 'bpf_libdir=none' };
  const dir = nodeDir();
  if (dir) env.npm_config_nodedir = dir;
  const prebuildify = join(root, 'node_modules', 'prebuildify', 'bin.js');
  run(process.execPath, [
    prebuildify, '--napi', '--strip', '--strip-bin', strip, '--tag-libc',
    '--platform', 'linux', '--arch', arch, '--target', process.versions.node,
    '--node-gyp', join(root, 'node_modules', '.bin', 'node-gyp'),
    '--cache', join(cacheDir, 'node-gyp'), stage,
  ], { cwd: stage, env });

  const built = join(stage, 'prebuilds', `linux-${arch}`, prebuildFile);
  const machine = elfMachine(built);
  if (machine !== targets[arch].machine) {
    fail(`${built} is ELF machine ${machine}, expected ${targets[arch].machine} (${arch}); is ${cxx} the right compiler?`);
  }

  // Rename into place so a reader (npm pack, a test) never sees half a file;
  // other names in the folder would be stale builds node-gyp-build might pick.
  const out = outputPath(arch);
  mkdirSync(dirname(out), { recursive: true });
  for (const f of readdirSync(dirname(out))) if (f !== prebuildFile && f !== loaderFile) unlinkSync(join(dirname(out), f));
  copyFileSync(built, `${out}.tmp`);
  renameSync(`${out}.tmp`, out);

  const loader = loaderPath(arch);
  run('sh', [join(root, 'native', 'bpf', 'build.sh'), arch, `${loader}.tmp`], { cwd: root });
  if (elfMachine(`${loader}.tmp`) !== targets[arch].machine) fail(`${loader}.tmp is not an ${arch} executable`);
  renameSync(`${loader}.tmp`, loader);
  rmSync(stage, { recursive: true, force: true });
  return out;
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

// mkdir is atomic: whoever creates the folder holds the lock. A holder that
// died (killed by a test timeout) is detected by its pid and replaced.
async function withLock(fn) {
  const lock = join(cacheDir, 'lock');
  const deadline = Date.now() + LOCK_WAIT_MS;
  mkdirSync(cacheDir, { recursive: true });
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      let holder = NaN;
      try { holder = Number(readFileSync(join(lock, 'pid'), 'utf8')); } catch { /* being written or removed */ }
      const age = (() => { try { return Date.now() - statSync(lock).mtimeMs; } catch { return 0; } })();
      if ((Number.isInteger(holder) && holder > 0 && !pidAlive(holder)) || (Number.isNaN(holder) && age > 10_000)) {
        rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) fail(`timed out waiting for ${lock} (held by pid ${holder})`);
      await sleep(200);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  await withLock(async () => {
    for (const arch of opts.archs) {
      const started = Date.now();
      const inputs = inputsHash(arch);
      if (!opts.force && upToDate(arch, inputs)) {
        console.log(`prebuild: linux-${arch} up to date (${outputPath(arch)})`);
        continue;
      }
      const out = build(arch);
      writeFileSync(stampPath(arch), JSON.stringify({ inputs, output: fileHash(out), loader: fileHash(loaderPath(arch)) }));
      console.log(`prebuild: linux-${arch} built in ${Date.now() - started} ms: ${out} (${statSync(out).size} bytes)`);
    }
  });
}

try {
  await main();
} catch (err) {
  if (!(err instanceof PrebuildError)) throw err;
  console.error(`prebuild: ${err.message}`);
  process.exitCode = 1;
}
