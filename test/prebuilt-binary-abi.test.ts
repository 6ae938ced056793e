// The prebuilt binaries shipped in the npm tarball load on the hosts the
// README promises (glibc >= 2.17: RHEL/CentOS 7+, Debian 9+, Ubuntu 16.04+):
// both need nothing newer than CentOS 7's glibc 2.17 and gcc 4.8's
// libstdc++ (GLIBCXX_3.4.19, CXXABI_1.3.7), the arm64 one is an aarch64
// shared object asking for the same Node API, and both call only N-API
// functions of version 8 or older, which every Node.js >= 18 exports.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { ensurePrebuilds, nodeHeadersDir, prebuilt, PREBUILD_TIMEOUT_MS, run } from './fixtures/install-support';

beforeAll(ensurePrebuilds, PREBUILD_TIMEOUT_MS + 10_000);

const objdump = { x64: 'objdump', arm64: 'aarch64-linux-gnu-objdump' };

interface DynamicInfo {
  versions: Map<string, string[]>; // GLIBC -> ['2.2.5', '2.17'], GLIBCXX -> ...
  imports: Set<string>;           // undefined dynamic symbols
  needed: string[];
}

async function dynamicInfo(arch: 'x64' | 'arm64'): Promise<DynamicInfo> {
  const { stdout: symbols } = await run(objdump[arch], ['-T', prebuilt[arch]], { timeout: 20_000 });
  const { stdout: headers } = await run(objdump[arch], ['-p', prebuilt[arch]], { timeout: 20_000 });
  const versions = new Map<string, string[]>();
  const imports = new Set<string>();
  for (const line of symbols.split('\n')) {
    const m = /\*UND\*\s+[0-9a-f]+\s+(?:\(?([A-Z]+)_([0-9.]+)\)?|Base)\s+(\S+)$/.exec(line);
    if (!m) continue;
    imports.add(m[3]);
    if (m[1]) versions.set(m[1], [...(versions.get(m[1]) ?? []), m[2]]);
  }
  const needed = [...headers.matchAll(/^\s*NEEDED\s+(\S+)$/gm)].map((n) => n[1]);
  return { versions, imports, needed };
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d;
  }
  return 0;
}

const newest = (list: string[] = []) => [...list].sort(compareVersions).pop();

// Functions node_api.h declares for a given NAPI_VERSION, from the headers
// of the Node.js the addon is built against.
async function napiDeclared(version: number): Promise<Set<string>> {
  const dir = nodeHeadersDir();
  const { stdout } = await run('cpp', ['-P', `-DNAPI_VERSION=${version}`, `-I${dir}`, join(dir, 'node_api.h')],
    { timeout: 20_000, maxBuffer: 16 << 20 });
  return new Set([...stdout.matchAll(/\b((?:napi|node_api)_\w+)\s*\(/g)].map((m) => m[1]));
}

// The README's promise, as numbers.
const MAX = { GLIBC: '2.17', GLIBCXX: '3.4.19', CXXABI: '1.3.7' };

function expectWithinPromise(versions: Map<string, string[]>) {
  for (const [lib, max] of Object.entries(MAX)) {
    const needs = newest(versions.get(lib));
    if (needs) expect(compareVersions(needs, max), `needs ${lib}_${needs}, promised ${lib} <= ${max}`).toBeLessThanOrEqual(0);
  }
}

it('x64: glibc <= 2.17, libstdc++ <= gcc 4.8 (GLIBCXX_3.4.19, CXXABI_1.3.7), no unexpected libraries', async () => {
  const { versions, needed } = await dynamicInfo('x64');
  const glibc = newest(versions.get('GLIBC'));
  // objdump output that parsed to nothing would pass every bound below.
  expect(glibc, 'no GLIBC_ versions found in objdump -T output').toBeDefined();
  expectWithinPromise(versions);
  expect([...versions.keys()].filter((k) => !['GLIBC', 'GLIBCXX', 'CXXABI', 'GCC'].includes(k))).toEqual([]);
  const gcc = newest(versions.get('GCC'));
  if (gcc) expect(compareVersions(gcc, '8.0.0'), `needs GCC_${gcc}`).toBeLessThanOrEqual(0);
  expect(needed.filter((lib) => !['libc.so.6', 'libm.so.6', 'libstdc++.so.6', 'libgcc_s.so.1'].includes(lib))).toEqual([]);
  console.log(`linux-x64 prebuild: ${[...versions].map(([k, v]) => `${k}_${newest(v)}`).join(', ')}; NEEDED ${needed.join(', ')}`);
});

it('arm64: an aarch64 ELF shared object, glibc <= 2.17, libstdc++ <= gcc 4.8, importing the same Node API as x64', async () => {
  const elf = readFileSync(prebuilt.arm64);
  expect(elf.subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  expect(elf[4]).toBe(2); // ELFCLASS64
  expect(elf[5]).toBe(1); // little-endian
  expect(elf.readUInt16LE(16)).toBe(3); // ET_DYN
  expect(elf.readUInt16LE(18)).toBe(183); // EM_AARCH64

  const arm = await dynamicInfo('arm64');
  const x64 = await dynamicInfo('x64');
  const glibc = newest(arm.versions.get('GLIBC'));
  expect(glibc).toBeDefined();
  expectWithinPromise(arm.versions);
  const nodeApi = (s: Set<string>) => [...s].filter((n) => /^(napi|node_api|uv)_/.test(n)).sort();
  expect(nodeApi(arm.imports).length).toBeGreaterThan(10);
  expect(nodeApi(arm.imports)).toEqual(nodeApi(x64.imports));
});

it('both call only N-API functions of NAPI_VERSION <= 8 (Node.js 18, 20, 22, 24 all export them)', async () => {
  const v8 = await napiDeclared(8);
  const v9 = await napiDeclared(9);
  // The header gate is real: version 9 adds functions that 8 hides.
  expect(v9.has('node_api_get_module_file_name')).toBe(true);
  expect(v8.has('node_api_get_module_file_name')).toBe(false);
  for (const arch of ['x64', 'arm64'] as const) {
    const napi = [...(await dynamicInfo(arch)).imports].filter((n) => /^(napi|node_api)_/.test(n));
    expect(napi.length).toBeGreaterThan(10);
    expect(napi.filter((n) => !v8.has(n)), `${arch} imports functions newer than N-API 8`).toEqual([]);
  }
});
