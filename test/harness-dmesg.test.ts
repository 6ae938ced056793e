// The guest harness fails a kernel's run on any kernel report in the guest's
// log (test/support/guest/dmesg.mjs). These are the report shapes the
// kernels of the matrix print, as the kernel prints them; the real-guest
// side (a WARN and a KFENCE report triggered in every guest, and found) is
// the self-test in test/support/guest/selftest/.
import { describe, it, expect } from 'vitest';
// @ts-expect-error plain ESM module without types
import { findReports, guestReports, kernelLines, formatReports } from './support/guest/dmesg.mjs';

const ts = (lines: string[], t0 = 12.5) => lines.map((l, i) => `[${(t0 + i / 1000).toFixed(6).padStart(12)}] ${l}`).join('\n');

const WARN = [
  '------------[ cut here ]------------',
  'toa: something odd',
  'WARNING: CPU: 1 PID: 412 at /src/kmod/toa.c:120 toa_init+0x15/0x30 [toa]',
  'Modules linked in: toa(OE+) veth tun overlay 9p',
  'CPU: 1 PID: 412 Comm: insmod Tainted: G           OE      6.12.117+deb12-amd64 #1  Debian 6.12.117-1~deb12u1',
  'RIP: 0010:toa_init+0x15/0x30 [toa]',
  'Call Trace:',
  ' <TASK>',
  ' do_one_initcall+0x5b/0x320',
  ' </TASK>',
  '---[ end trace 0000000000000000 ]---',
];
// 6.16+ print the location first and the CPU last
const WARN_NEW = [
  '------------[ cut here ]------------',
  'WARNING: kmod/toa.c:120 at toa_init+0x15/0x30 [toa], CPU#0: insmod/412',
  'Call Trace:',
  '---[ end trace 0000000000000000 ]---',
];
const KFENCE = [
  '==================================================================',
  'BUG: KFENCE: use-after-free read in toa_lookup+0x4c/0x90 [toa]',
  '',
  'Use-after-free read at 0x00000000b9e3a1b2 (in kfence-#42):',
  ' toa_lookup+0x4c/0x90 [toa]',
  '',
  'kfence-#42: 0x00000000b9e3a1b2-0x00000000f01fd5c1, size=32, cache=kmalloc-32',
  '==================================================================',
];
const LOCKDEP = [
  '======================================================',
  'WARNING: possible circular locking dependency detected',
  '6.12.117 #1 Not tainted',
  '------------------------------------------------------',
  'insmod/412 is trying to acquire lock:',
  '======================================================',
];
const RECURSIVE_OLD = ['=============================================', '[ INFO: possible recursive locking detected ]', '============================================='];
const ARM64_OOPS = [
  'Unable to handle kernel NULL pointer dereference at virtual address 0000000000000008',
  'Internal error: Oops: 0000000096000006 [#1] SMP',
  'Call trace:',
  ' toa_get+0x20/0x60 [toa]',
  '---[ end trace 0000000000000000 ]---',
];
const QUIET_BOOT = [
  'Linux version 6.12.117+deb12-amd64 (debian-kernel@lists.debian.org)',
  'kfence: initialized - using 2097152 bytes for 255 objects at 0x(____ptrval____)-0x(____ptrval____)',
  'RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leaks possible!',
  'toa: loading out-of-tree module taints kernel.',
  'toa: module verification failed: signature and/or required key missing - tainting kernel',
];

describe('guest kernel log reports (dmesg.mjs)', () => {
  it('finds nothing in a clean boot log, mitigation notes included', () => {
    expect(findReports(kernelLines(ts(QUIET_BOOT)))).toEqual([]);
  });

  for (const [name, lines, kind, headline] of [
    ['a WARN()', WARN, 'warn', WARN[2]],
    ['a WARN() in the 6.16+ format', WARN_NEW, 'warn', WARN_NEW[1]],
    ['a KFENCE report', KFENCE, 'kfence', KFENCE[1]],
    ['a lockdep circular-locking report', LOCKDEP, 'lockdep', LOCKDEP[1]],
    ['an old-style lockdep report', RECURSIVE_OLD, 'lockdep', RECURSIVE_OLD[1]],
    ['an arm64 oops', ARM64_OOPS, 'oops', ARM64_OOPS[0]],
    ['a BUG: line', ['BUG: sleeping function called from invalid context at mm/slab.h:1'], 'bug', 'BUG: sleeping function called from invalid context at mm/slab.h:1'],
  ] as const) {
    it(`finds ${name} with its lines, amid a quiet boot`, () => {
      const log = ts([...QUIET_BOOT.slice(0, 3), ...lines, 'toa: unloaded']);
      const reports = findReports(kernelLines(log));
      expect(reports).toHaveLength(1);
      expect(reports[0]).toMatchObject({ kind, headline });
      // the whole report, nothing after it
      expect(reports[0].lines.filter((l: string) => l !== '')).toEqual(expect.arrayContaining(lines.filter((l) => l !== '').slice(-2)));
      expect(reports[0].lines).not.toContain('toa: unloaded');
      expect(formatReports(reports)).toContain(headline);
    });
  }

  it('reads the console for kernel lines only, and keeps a report seen in dmesg and console once', () => {
    const consoleText = [
      'guest: kernel 6.12.117+deb12-amd64, node v20.19.2, 2 cpus',
      ' ✓ test/kernel/kmod-behaviour.test.ts > prints WARNING: in a test name', // user space
      ts(WARN.slice(0, 3)),
      ts(KFENCE, 30),
    ].join('\r\n');
    const { reports, selftest } = guestReports({ dmesg: ts(WARN), consoleText });
    expect(reports.map((r: { kind: string }) => r.kind)).toEqual(['warn', 'kfence']);
    expect(selftest).toBe(null);
  });

  it('finds two reports back to back', () => {
    const reports = findReports(kernelLines(ts([...WARN, ...KFENCE])));
    expect(reports.map((r: { kind: string }) => r.kind)).toEqual(['warn', 'kfence']);
  });

  it("sets the self-test's reports apart by its nonce, and only those", () => {
    const nonce = 'a1b2c3';
    const selftestRun = ['toa-selftest a1b2c3: begin', ...WARN, ...KFENCE, 'toa-selftest a1b2c3: end'];
    const dmesg = ts([...QUIET_BOOT, ...selftestRun]);
    const clean = guestReports({ dmesg, nonce });
    expect(clean.reports).toEqual([]);
    expect(clean.selftest.map((r: { kind: string }) => r.kind)).toEqual(['warn', 'kfence']);
    // another nonce (an older run's lines) exempts nothing
    const other = guestReports({ dmesg, nonce: 'ffffff' });
    expect(other.selftest).toBe(null);
    expect(other.reports).toHaveLength(2);
    // the console's copy, behind a terminal escape vitest left on the line
    const consoleText = `\u001b[?25h${ts(selftestRun, 40)}`;
    expect(guestReports({ dmesg, consoleText, nonce }).reports).toEqual([]);
    expect(guestReports({ consoleText, nonce }).selftest).toHaveLength(2);
    // a report before the markers still fails the run
    const before = guestReports({ dmesg: ts([...LOCKDEP, ...selftestRun]), nonce });
    expect(before.reports.map((r: { kind: string }) => r.kind)).toEqual(['lockdep']);
    expect(before.selftest).toHaveLength(2);
  });
});
