// `make -C kmod` on a host without headers for the target kernel must say
// which package to install, not end in Kbuild's bare "No such file or
// directory". Runs the real Makefile; nothing is built or installed (the
// headers check comes before any kbuild call). This machine kind's own
// kernel has no headers (no module support), so the default target is the
// real no-headers case.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const kmod = join(__dirname, '../kmod');
const empty = mkdtempSync(join(tmpdir(), 'toa-kdir-'));
afterAll(() => rmSync(empty, { recursive: true, force: true }));

function make(...args: string[]) {
  const r = spawnSync('make', ['-C', kmod, ...args], { encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return { status: r.status, stderr: r.stderr };
}

function expectNamesPackages(r: { status: number | null; stderr: string }, kdir: string, kver: string) {
  expect(r.status).toBe(2);
  expect(r.stderr).toContain(`toa: no kernel headers at ${kdir}`);
  expect(r.stderr).toContain(`apt-get install linux-headers-${kver}`);
  expect(r.stderr).toContain(`dnf install kernel-devel-${kver}`);
  expect(r.stderr).toContain('KDIR=');
  expect(r.stderr).not.toMatch(/No such file or directory/);
}

describe('make without kernel headers', () => {
  it('the running kernel has none here (the case under test)', () => {
    expect(existsSync(`/lib/modules/${release()}/build/Makefile`)).toBe(false);
  });

  for (const target of [[], ['clean']]) {
    const name = target.length ? target.join(' ') : 'make';
    it(`${name}: default KDIR names the running kernel's package`, () => {
      expectNamesPackages(make(...target), `/lib/modules/${release()}/build`, release());
    });

    it(`${name}: KDIR that does not exist`, () => {
      expectNamesPackages(make(...target, 'KDIR=/nonexistent/toa-headers'), '/nonexistent/toa-headers', release());
    });

    it(`${name}: KDIR without a Makefile (headers removed, directory left)`, () => {
      expectNamesPackages(make(...target, `KDIR=${empty}`), empty, release());
    });

    it(`${name}: KVER picks the package and the default KDIR`, () => {
      expectNamesPackages(make(...target, 'KVER=6.1.0-99-amd64'), '/lib/modules/6.1.0-99-amd64/build', '6.1.0-99-amd64');
    });
  }
});
