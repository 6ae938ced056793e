// `node-toa doctor` on this host's kernel, in each state the eBPF backend can
// be in (the kernel-module states are proven in the guests:
// test/kernel/doctor-kmod.test.ts). The doctor runs as a real CLI process.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { Sandbox } from './bpf-support';
import type { DoctorReport } from '../src/doctor';

const root = join(__dirname, '..');
const cli = join(root, 'dist/cjs/cli.js');
let box: Sandbox | undefined;
afterEach(async () => { await box?.cleanup(); box = undefined; });

interface Run { code: number; stdout: string; report?: DoctorReport }

/** Runs the doctor, optionally from inside `cgroup`, against pins in `pinDir`. */
function doctor(pinDir: string, cgroup?: string, json = true): Promise<Run> {
  const args = [cli, 'doctor', ...(json ? ['--json'] : [])];
  const [cmd, argv] = cgroup
    ? ['/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, process.execPath, ...args]]
    : [process.execPath, args];
  return new Promise((resolve) => {
    execFile(cmd, argv, { env: { ...process.env, TOA_BPF_PIN_DIR: pinDir }, timeout: 30_000 }, (err, stdout) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, report: json ? JSON.parse(stdout) : undefined });
    });
  });
}

it('no provider: fails with exit code 1 and says what to do', async () => {
  const empty = mkdtempSync(join(tmpdir(), 'toa-nopins-'));
  try {
    const { code, report } = await doctor(join(empty, 'node-toa'));
    expect(code).toBe(1);
    expect(report!.providers).toEqual([]);
    expect(report!.verdict).toBe('fail');
    expect(report!.selfTest).toEqual({ extendedQuery: 'ENOPROTOOPT', source: 'peer' });
    const fail = report!.findings.find((f) => f.level === 'fail')!;
    expect(fail.message).toMatch(/no TOA provider/);
    expect(fail.next).toMatch(/modprobe toa/);
    expect(fail.next).toMatch(/bpf attach/);
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});

it('eBPF backend, no trusted ranges: works, warns loudly about spoofing', async () => {
  box = new Sandbox('doctor-open');
  await box.attach({ ipv4Kinds: [200, 254] });
  const { code, report } = await doctor(box.pinDir, box.cgroup);
  expect(code).toBe(0);
  expect(report!.verdict).toBe('warn');
  expect(report!.providers).toHaveLength(1);
  expect(report!.providers[0]).toMatchObject({ kind: 'node-toa-bpf', ipv4Kinds: [200, 254], ipv6Kinds: [253], trusted: [], cgroups: [box.cgroup] });
  expect(report!.selfTest.extendedQuery).toBe('answered');
  expect(report!.findings.find((f) => f.level === 'warn')!.message).toMatch(/NO trusted ranges.*spoofing/);
});

it('eBPF backend with trusted ranges: verdict ok; human output lists counters with meanings', async () => {
  box = new Sandbox('doctor-trusted');
  await box.attach({ trusted: ['203.0.113.0/24', '2001:db8::/32'] });
  const { code, report } = await doctor(box.pinDir, box.cgroup);
  expect(code).toBe(0);
  expect(report!.providers[0].trusted).toEqual(['203.0.113.0/24', '2001:db8::/32']);
  expect(report!.findings.filter((f) => f.level !== 'ok')).toEqual([]);
  expect(report!.verdict).toBe('ok');
  const text = await doctor(box.pinDir, box.cgroup, false);
  expect(text.stdout).toMatch(/trusted\s+203\.0\.113\.0\/24, 2001:db8::\/32/);
  expect(text.stdout).toMatch(/syn_recv_sock_no_toa\s+\d+\s+connections without a usable TOA option/);
  expect(text.stdout).toMatch(/verdict: TOA works$/m);
});

it('eBPF backend attached elsewhere: this process is not covered, and doctor says so', async () => {
  box = new Sandbox('doctor-elsewhere');
  await box.attach({ trusted: ['203.0.113.0/24'] });
  const { code, report } = await doctor(box.pinDir);
  expect(code).toBe(0);
  expect(report!.selfTest.extendedQuery).toBe('ENOPROTOOPT');
  expect(report!.findings.some((f) => f.level === 'warn' && /did not answer this process/.test(f.message))).toBe(true);
});
