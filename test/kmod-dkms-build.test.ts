// kmod/dkms.conf as DKMS uses it on a user's host: `dkms add` + `dkms build`
// for every Debian kernel whose headers this machine has (.ci/run installs
// 6.1's and 6.12's). Private source and DKMS trees: nothing is registered on
// this machine. (`make dkms-install` does the same against /usr/src.)
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';

const run = promisify(execFile);
const kmod = join(__dirname, '../kmod');
const version = /PACKAGE_VERSION="([^"]+)"/.exec(readFileSync(join(kmod, 'dkms.conf'), 'utf8'))![1];
const kernels = readdirSync('/lib/modules').filter((k) => /-amd64$/.test(k) && existsSync(`/lib/modules/${k}/build/Makefile`));
let work: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'toa-dkms-'));
  const src = join(work, 'src', `toa-${version}`);
  mkdirSync(join(src, 'uapi'), { recursive: true });
  mkdirSync(join(work, 'tree'));
  for (const f of readdirSync(kmod)) {
    if (/\.(c|h)$|^(Makefile|Kbuild|dkms\.conf)$/.test(f)) cpSync(join(kmod, f), join(src, f));
  }
  cpSync(join(kmod, 'uapi/toa.h'), join(src, 'uapi/toa.h'));
  await run('dkms', ['add', '-m', 'toa', '-v', version, '--sourcetree', join(work, 'src'), '--dkmstree', join(work, 'tree')]);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

it('this machine has Debian kernel headers to build against', () => {
  expect(kernels.length).toBeGreaterThanOrEqual(2);
});

// (Warnings fail the guest matrix's own build of the same sources.)
it('dkms builds toa.ko for every installed kernel', async () => {
  for (const k of kernels) {
    await run('dkms', ['build', '-m', 'toa', '-v', version, '-k', k, '--sourcetree', join(work, 'src'), '--dkmstree', join(work, 'tree')], { timeout: 240_000 });
    const ko = join(work, 'tree/toa', version, k, 'x86_64/module/toa.ko');
    expect(existsSync(ko) || existsSync(`${ko}.xz`) || existsSync(`${ko}.zst`)).toBe(true);
  }
}, 600_000);
