// `node-toa doctor` in each kernel-module state, inside a guest: no module,
// the module with no trusted ranges, with trusted ranges — and whether a ::
// listener is reported as covered.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { DoctorReport } from '../../src/doctor';
import { insmod, loaded, rmmod, setParam } from '../spec/kmod';

const cli = join(__dirname, '../../dist/cjs/cli.js');
// No eBPF backend in these cases: point the doctor at an empty pin dir.
const pinDir = join(mkdtempSync(join(tmpdir(), 'toa-doctor-')), 'node-toa');

function doctor(): Promise<{ code: number; report: DoctorReport }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, 'doctor', '--json'], { env: { ...process.env, TOA_BPF_PIN_DIR: pinDir }, timeout: 60_000 }, (err, stdout) => {
      resolve({ code: err ? Number(err.code) : 0, report: JSON.parse(stdout) });
    });
  });
}

let listener: net.Server;
beforeAll(async () => {
  if (loaded()) rmmod();
  listener = net.createServer().listen(0, '::');
  await new Promise((r) => listener.once('listening', r));
});
afterAll(() => {
  listener?.close();
  if (loaded()) rmmod();
});

it('no module: provider none, exit 1, next step names modprobe', async () => {
  const { code, report } = await doctor();
  expect(code).toBe(1);
  expect(report.providers).toEqual([]);
  expect(report.selfTest.extendedQuery).toBe('ENOPROTOOPT');
  expect(report.findings.find((f) => f.level === 'fail')?.next).toMatch(/modprobe toa/);
}, 90_000);

it('module without trusted ranges: works, spoofing warning, :: listener covered', async () => {
  insmod();
  const { code, report } = await doctor();
  expect(code).toBe(0);
  expect(report.verdict).toBe('warn');
  expect(report.providers).toEqual([expect.objectContaining({ kind: 'node-toa-kmod', ipv4Kinds: [200], ipv6Kinds: [253], trusted: [] })]);
  expect(report.providers[0].counters).toHaveProperty('syn_recv_sock_toa');
  expect(report.selfTest.extendedQuery).toBe('answered');
  expect(report.findings.some((f) => f.level === 'warn' && /NO trusted ranges.*spoofing/.test(f.message))).toBe(true);
  const port = (listener.address() as net.AddressInfo).port;
  expect(report.listeners).toContainEqual(expect.objectContaining({ address: '::', port, dualStack: true }));
  expect(report.findings.some((f) => f.level === 'ok' && /dual-stack\): covered/.test(f.message))).toBe(true);
}, 90_000);

it('module with trusted ranges and kind 254: verdict ok, configuration shown', async () => {
  setParam('trusted', '203.0.113.0/24,2001:db8::/32');
  setParam('ipv4_kinds', '200,254');
  const { code, report } = await doctor();
  expect(code).toBe(0);
  expect(report.providers[0]).toMatchObject({ kind: 'node-toa-kmod', ipv4Kinds: [200, 254], trusted: ['203.0.113.0/24', '2001:db8::/32'] });
  expect(report.verdict).toBe('ok');
}, 90_000);
