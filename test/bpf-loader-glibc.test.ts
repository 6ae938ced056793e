// The loader's portability promise: toa-bpf for x64 (node-gyp's build and
// native/bpf/build.sh) and arm64 (cross-built) needs glibc 2.28 at most and
// no shared library but libc: libbpf, libelf and zlib are linked in.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it, expect } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

function floor(bin: string, objdump: string) {
  const r = spawnSync(objdump, ['-T', '-p', bin], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${objdump} failed: ${r.stderr}`);
  const versions = [...new Set([...r.stdout.matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => `${m[1]}.${m[2]}`))];
  const max = versions.sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1])).at(-1);
  const needed = [...r.stdout.matchAll(/NEEDED\s+(\S+)/g)].map((m) => m[1]).sort();
  return { max, needed };
}

describe('toa-bpf glibc floor', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'toa-bpf-floor-'));
  for (const [arch, objdump, libs] of [
    ['x64', 'objdump', ['libc.so.6']],
    ['arm64', 'aarch64-linux-gnu-objdump', ['ld-linux-aarch64.so.1', 'libc.so.6']],
  ] as const) {
    it(`${arch}: GLIBC <= 2.28, only libc`, () => {
      const out = path.join(tmp, `toa-bpf-${arch}`);
      const b = spawnSync(path.join(root, 'native/bpf/build.sh'), [arch, out], { encoding: 'utf8', timeout: 300000 });
      expect(b.status, b.stderr).toBe(0);
      const f = floor(out, objdump);
      console.log(`toa-bpf ${arch}: needs GLIBC_${f.max}, ${f.needed.join(' ')}`);
      expect(Number(f.max!.split('.')[1])).toBeLessThanOrEqual(28);
      expect(f.needed).toEqual([...libs]);
    }, 300000);
  }
  it('node-gyp\'s build (build/Release/toa-bpf): the same', () => {
    const bin = path.join(root, 'build/Release/toa-bpf');
    expect(fs.existsSync(bin), 'run npm run build:native').toBe(true);
    const f = floor(bin, 'objdump');
    expect(Number(f.max!.split('.')[1])).toBeLessThanOrEqual(28);
    expect(f.needed).toEqual(['libc.so.6']);
  });
});
