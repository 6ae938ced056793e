// `npm ci && npm run demo` on a machine without clang: the demo names what is
// missing before any build step runs (a fresh clone has no eBPF object, so
// clang and llvm-strip are needed). A checkout copied without build outputs
// stands in for the fresh clone; PATH holds every tool but those two.
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';

const root = join(__dirname, '..');
let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'node-toa-bare-'));
  const clone = join(work, 'clone');
  for (const f of ['package.json', 'binding.gyp', 'scripts', 'native', 'src', 'tsconfig.json', 'kmod/uapi', 'test/support/lb']) {
    cpSync(join(root, f), join(clone, f), { recursive: true });
  }
  mkdirSync(join(clone, 'bpf'));
  for (const f of readdirSync(join(root, 'bpf'))) if (f !== 'dist') cpSync(join(root, 'bpf', f), join(clone, 'bpf', f), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(clone, 'node_modules'));
  // Every command of this PATH, minus the eBPF compiler and its strip.
  const bin = join(work, 'bin');
  mkdirSync(bin);
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir || !existsSync(dir)) continue;
    for (const cmd of readdirSync(dir)) {
      if (/^(clang|llvm-strip)(-\d+)?$/.test(cmd) || existsSync(join(bin, cmd))) continue;
      try { symlinkSync(realpathSync(join(dir, cmd)), join(bin, cmd)); } catch { /* dangling link */ }
    }
  }
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

it('no clang: npm run demo names clang and llvm before anything is built', async () => {
  const clone = join(work, 'clone');
  const result = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = execFile('npm', ['run', 'demo'], { cwd: clone, env: { ...process.env, PATH: join(work, 'bin') }, timeout: 120_000 }, () => {});
    let out = '';
    child.stdout!.on('data', (d) => { out += d; });
    child.stderr!.on('data', (d) => { out += d; });
    child.on('close', (code) => resolve({ code, out }));
  });
  expect(result.out).toContain('npm run demo needs:');
  expect(result.out).toContain('clang (apt-get install clang)');
  expect(result.out).toContain('llvm-strip (apt-get install llvm)');
  expect(result.out).not.toMatch(/gyp info|make: Entering|No such file/);
  expect(result.code).toBe(1);
  expect(existsSync(join(clone, 'build'))).toBe(false);
  expect(existsSync(join(clone, 'bpf/dist'))).toBe(false);
}, 130_000);
