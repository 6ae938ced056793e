#!/usr/bin/env node
// Runs the kernel suite (vitest.kernel.config.ts: test/kernel/**/*.test.ts)
// in a QEMU guest for every Debian kernel of the matrix, one guest at a time.
//
//   node test/support/guest/matrix.mjs [--kernel 6.1] [--kernel 5.10,sid]
//        [--file test/kernel/harness.test.ts] [--inner-timeout 900]
//        [--env TOA_FUZZ_N=2000] [--allow-skip] [--quiet] [-- <extra vitest args>]
//
// Per kernel: resolve + fetch (kernels.mjs), build kmod/ with that kernel's
// headers and compiler (kmod-build.mjs; chroot.mjs), build the initramfs,
// boot, run, collect. Results: .cache/results/runs/<run>/<kver>/{console.log,
// vitest.json,dmesg.txt,kmod-build.log}, the run's kernel-matrix.json, and
// the shared summary .cache/results/kernel-matrix.json (latest entry per
// kernel). Exit status 0 only if every selected kernel passed: an oops,
// panic, hang, build failure, missing prerequisite, skipped or failed test
// is a failure.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KERNELS, HarnessError, cacheRoot, fetchKernel, lockFile, projectRoot, sh, withLock } from './kernels.mjs';
import { KERNEL_TROUBLE, buildInitramfs, runGuest } from './guest.mjs';
import { ensureBuildChroot } from './chroot.mjs';
import { buildKmod } from './kmod-build.mjs';
import { build as buildLb } from '../lb/index.mjs';

function parseArgs(argv) {
  const o = { kernels: [], files: [], innerTimeoutS: 900, allowSkip: false, quiet: false, extra: [], env: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new HarnessError('EUSAGE', `${a} needs a value`);
      return argv[++i];
    };
    if (a === '--') { o.extra = argv.slice(i + 1); break; }
    if (a === '--kernel' || a === '-k') o.kernels.push(...val().split(','));
    else if (a === '--file' || a === '-f') o.files.push(val());
    else if (a === '--inner-timeout') o.innerTimeoutS = Number(val());
    else if (a === '--env' || a === '-e') {
      const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(val());
      if (!m) throw new HarnessError('EUSAGE', '--env takes NAME=value');
      o.env[m[1]] = m[2];
    } else if (a === '--allow-skip') o.allowSkip = true;
    else if (a === '--quiet' || a === '-q') o.quiet = true;
    else if (a === '--help' || a === '-h') {
      console.log(fs.readFileSync(new URL(import.meta.url), 'utf8').split('\n').slice(1, 16).join('\n'));
      process.exit(0);
    } else throw new HarnessError('EUSAGE', `unknown argument ${a}`);
  }
  const known = KERNELS.map((k) => k.id);
  for (const k of o.kernels) {
    if (!known.includes(k)) throw new HarnessError('EUSAGE', `unknown kernel ${k} (known: ${known.join(', ')})`);
  }
  return o;
}

function checkPrerequisites() {
  const missing = [];
  for (const [bin, pkg] of [['qemu-system-x86_64', 'qemu-system-x86'], ['cpio', 'cpio'], ['modprobe', 'kmod'],
    ['depmod', 'kmod'], ['apt-get', 'apt'], ['dpkg', 'dpkg'], ['xz', 'xz-utils'], ['zstd', 'zstd'],
    ['clang', 'clang'], ['gcc', 'gcc'], ['make', 'make']]) {
    if (sh('sh', ['-c', `command -v ${bin}`], { allowFail: true }).status !== 0) missing.push(`${bin} (${pkg})`);
  }
  if (!fs.existsSync('/bin/busybox')) missing.push('/bin/busybox (busybox-static)');
  if (!fs.existsSync(path.join(projectRoot, 'node_modules/vitest/vitest.mjs'))) missing.push('node_modules/vitest (npm ci)');
  if (process.getuid() !== 0) missing.push('root');
  if (missing.length) throw new HarnessError('ENOPREREQ', `missing prerequisites: ${missing.join(', ')}`);
}

function buildBpf() {
  const dir = path.join(projectRoot, 'bpf');
  if (!fs.existsSync(path.join(dir, 'Makefile'))) return null;
  const r = sh('make', ['-s', '-C', dir], { allowFail: true });
  const obj = path.join(dir, 'dist/toa.bpf.o');
  if (r.status !== 0 || !fs.existsSync(obj)) {
    console.error(`bpf/ did not build (make exit ${r.status}):\n${r.stderr}`);
    return null;
  }
  return obj;
}

function readReport(file) {
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

/**
 * The JSON report exists only if vitest finished; otherwise rebuild what
 * happened from the progress reporter's lines, naming the file that never
 * ended (where the guest hung, panicked or timed out).
 */
function reportFromProgress(file) {
  if (!fs.existsSync(file)) return null;
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => {
    try { return JSON.parse(l); } catch { return null; }
  }).filter(Boolean);
  const files = new Map();
  for (const l of lines) {
    if (!files.has(l.file)) files.set(l.file, { name: l.file, status: 'running', message: '', assertionResults: [] });
    const f = files.get(l.file);
    if (l.type === 'test') {
      f.assertionResults.push({ fullName: l.name, status: l.status, duration: l.ms, failureMessages: l.error ? [l.error] : [] });
    } else if (l.type === 'file-end') {
      f.status = l.state === 'passed' || l.state === 'skipped' ? l.state : 'failed';
      f.message = (l.errors ?? []).join('\n');
    }
  }
  for (const f of files.values()) {
    if (f.status === 'running') {
      f.status = 'failed';
      f.message = 'did not finish (guest timed out, hung or crashed while this file ran)';
    }
  }
  return { testResults: [...files.values()] };
}

function summarize(report) {
  const files = (report?.testResults ?? []).map((f) => ({
    file: path.relative(projectRoot, f.name),
    status: f.status,
    message: f.message || undefined,
    tests: f.assertionResults.map((t) => ({
      name: t.fullName,
      status: t.status,
      ms: Math.round(t.duration ?? 0),
      failure: t.failureMessages?.length ? t.failureMessages.join('\n').slice(0, 2000) : undefined,
    })),
  }));
  const all = files.flatMap((f) => f.tests);
  return {
    files,
    passed: all.filter((t) => t.status === 'passed').length,
    failed: all.filter((t) => t.status === 'failed').length,
    skipped: all.filter((t) => t.status !== 'passed' && t.status !== 'failed').length,
    total: all.length,
    failedFiles: files.filter((f) => f.status === 'failed').length,
  };
}

async function runKernel(kernel, opts, shared) {
  const t0 = Date.now();
  const entry = { id: kernel.id, suite: kernel.suite, date: new Date().toISOString(), status: 'fail', reasons: [] };
  let k;
  try {
    const log = (m) => console.log(`[${kernel.id}] ${m}`);
    const onWait = (pid) => log(`waiting for process ${pid} preparing the same kernel`);
    k = await withLock(lockFile(`fetch-${kernel.id}`), () => fetchKernel(kernel, { log }), { onWait });
    if (fs.existsSync(path.join(projectRoot, 'kmod/Makefile'))) {
      const c = await withLock(lockFile(`chroot-${kernel.suite}`), () => ensureBuildChroot(kernel.suite, k.headersDir, { log }), { onWait });
      if (c) entry.buildChroot = c;
    }
  } catch (e) {
    if (k) Object.assign(entry, { kver: k.kver, packages: k.packages });
    entry.reasons.push(`prepare: ${e.message}`);
    entry.wallMs = Date.now() - t0;
    return entry;
  }
  Object.assign(entry, { kver: k.kver, packages: k.packages, fetchMs: k.fetchMs });
  const resultsDir = path.join(shared.runDir, k.kver);
  fs.mkdirSync(resultsDir, { recursive: true });
  const kmod = buildKmod(k, { chroot: entry.buildChroot?.chroot, logFile: path.join(resultsDir, 'kmod-build.log') });
  entry.kmod = { status: kmod.status, ko: kmod.ko, buildMs: kmod.ms, warnings: kmod.warnings?.length ?? 0 };
  if (kmod.status === 'failed') {
    entry.reasons.push(`kmod build failed${kmod.warnings?.length ? ` (${kmod.warnings.length} warnings)` : ''} (see ${path.relative(projectRoot, resultsDir)}/kmod-build.log)`);
    console.error(`[${kernel.id}] kmod build FAILED:\n${kmod.log}`);
  }
  let initramfs;
  try {
    initramfs = buildInitramfs(k);
  } catch (e) {
    entry.reasons.push(`initramfs: ${e.message}`);
    entry.wallMs = Date.now() - t0;
    return entry;
  }
  const env = { ...opts.env, TOA_KERNEL: k.kver, CI: '1' };
  if (kmod.ko) Object.assign(env, { TOA_KMOD: kmod.ko, TOA_KMOD_KO: kmod.ko });
  if (shared.bpfObj) env.TOA_BPF_OBJ = shared.bpfObj;
  console.log(`[${kernel.id}] booting ${k.kver} (${k.packages.image})`);
  // one guest at a time on this machine, whoever started the matrix
  const waitFrom = Date.now();
  const outcome = await withLock(lockFile('guest'), () => {
    entry.waitedMs = Date.now() - waitFrom;
    return runGuest(k, {
      initramfs, resultsDir, env, innerTimeoutS: opts.innerTimeoutS,
      vitestArgs: [...opts.files, ...opts.extra],
      onConsole: (line) => { if (!opts.quiet) console.log(`[${kernel.id}] ${line}`); },
    });
  }, { onWait: (pid) => console.log(`[${kernel.id}] waiting for the guest of process ${pid} to finish`) });
  entry.resultsDir = path.relative(projectRoot, resultsDir);
  const consoleText = fs.readFileSync(path.join(resultsDir, 'console.log'), 'utf8');
  const dmesgFile = path.join(resultsDir, 'dmesg.txt');
  const dmesg = fs.existsSync(dmesgFile) ? fs.readFileSync(dmesgFile, 'utf8') : '';
  const rcFile = path.join(resultsDir, 'rc');
  const rc = fs.existsSync(rcFile) ? Number(fs.readFileSync(rcFile, 'utf8').trim()) : null;
  const report = summarize(readReport(path.join(resultsDir, 'vitest.json')) ?? reportFromProgress(path.join(resultsDir, 'progress.jsonl')));
  Object.assign(entry, {
    bootMs: outcome.bootMs, testMs: outcome.testMs, guestWallMs: outcome.wallMs,
    passed: report.passed, failed: report.failed, skipped: report.skipped, total: report.total, files: report.files,
    vitestExit: rc,
  });
  const trouble = [consoleText, dmesg].flatMap((t) => t.split('\n')).filter((l) => KERNEL_TROUBLE.test(l));
  const guestFail = consoleText.split('\n').filter((l) => /TOA-GUEST-FAIL/.test(l));
  if (outcome.timedOut) entry.reasons.push(outcome.bootMs === null ? 'guest did not boot in time (hang?)' : 'guest timed out (hang?)');
  if (trouble.length) entry.reasons.push(`kernel trouble: ${trouble.slice(0, 5).join(' | ')}`);
  if (guestFail.length) entry.reasons.push(`guest prerequisite: ${guestFail.join(' | ')}`);
  if (rc === null && !outcome.timedOut) entry.reasons.push('guest ended without a result (panic or crash before the suite finished)');
  if (rc !== null && rc !== 0) entry.reasons.push(`vitest exited ${rc}${rc === 124 ? ' (inner timeout)' : ''}`);
  if (report.total === 0) entry.reasons.push('no test ran');
  if (report.failed || report.failedFiles) entry.reasons.push(`${report.failed} test(s) failed in ${report.failedFiles} file(s)`);
  for (const f of report.files.filter((x) => x.status === 'failed' && x.message)) entry.reasons.push(`${f.file}: ${f.message.split('\n')[0]}`);
  if (report.skipped && !opts.allowSkip) entry.reasons.push(`${report.skipped} test(s) skipped (not allowed: prerequisites must fail loudly)`);
  entry.status = entry.reasons.length ? 'fail' : 'pass';
  // time spent waiting for another run's guest is not this kernel's cost
  entry.wallMs = Date.now() - t0 - entry.waitedMs;
  if (entry.status === 'fail') {
    console.error(`\n[${kernel.id}] FAILED on ${k.kver}: ${entry.reasons.join('; ')}`);
    for (const f of report.files) {
      for (const t of f.tests.filter((x) => x.status === 'failed')) console.error(`  ✗ ${f.file} > ${t.name}\n${t.failure?.split('\n').slice(0, 6).map((l) => `      ${l}`).join('\n')}`);
    }
    console.error(`----- guest kernel log (${dmesg ? 'dmesg' : 'console'}) ${k.kver} -----`);
    console.error((dmesg || consoleText).split('\n').slice(-150).join('\n'));
    console.error('----- end of guest kernel log -----');
  }
  return entry;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  checkPrerequisites();
  const t0 = Date.now();
  const selected = opts.kernels.length ? KERNELS.filter((k) => opts.kernels.includes(k.id)) : KERNELS;
  // everything the guest executes is built here: TCG is ~10x slower
  buildLb();
  // every run keeps its own artefacts: concurrent runs must not clobber each other
  const runDir = path.join(cacheRoot, 'results', 'runs', `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`);
  fs.mkdirSync(runDir, { recursive: true });
  const shared = { bpfObj: buildBpf(), runDir };
  const results = [];
  for (const kernel of selected) results.push(await runKernel(kernel, opts, shared));
  const summary = {
    date: new Date().toISOString(),
    host: { kernel: os.release(), cpus: os.cpus().length, node: process.version },
    accel: 'tcg', selection: { kernels: selected.map((k) => k.id), files: opts.files },
    totalMs: Date.now() - t0,
    kernels: results,
  };
  fs.writeFileSync(path.join(runDir, 'kernel-matrix.json'), JSON.stringify(summary, null, 2));
  // the shared summary keeps the latest whole-suite entry per kernel (runs of
  // selected files go to kernel-matrix-partial.json); each entry says what it ran
  const partial = opts.files.length > 0 || opts.extra.length > 0;
  const out = path.join(cacheRoot, 'results', partial ? 'kernel-matrix-partial.json' : 'kernel-matrix.json');
  await withLock(lockFile('summary'), () => {
    const prev = fs.existsSync(out) ? JSON.parse(fs.readFileSync(out, 'utf8')) : { kernels: [] };
    const mine = new Set(results.map((r) => r.id));
    for (const r of results) r.selection = { files: opts.files, extra: opts.extra, env: opts.env, runTotalMs: summary.totalMs };
    const kernels = [...(prev.kernels ?? []).filter((r) => !mine.has(r.id)), ...results]
      .sort((a, b) => KERNELS.findIndex((k) => k.id === a.id) - KERNELS.findIndex((k) => k.id === b.id));
    fs.writeFileSync(out, JSON.stringify({ ...summary, kernels, lastRun: path.relative(projectRoot, runDir) }, null, 2));
  });
  console.log('\nkernel matrix:');
  for (const r of results) {
    const s = (ms) => (ms == null ? '-' : `${(ms / 1000).toFixed(1)}s`);
    console.log(`  ${r.status === 'pass' ? 'PASS' : 'FAIL'} ${r.id.padEnd(5)} ${(r.kver ?? '?').padEnd(24)} ` +
      `${r.passed ?? 0}/${r.total ?? 0} passed, ${r.failed ?? 0} failed, ${r.skipped ?? 0} skipped; ` +
      `boot ${s(r.bootMs)}, tests ${s(r.testMs)}, guest ${s(r.guestWallMs)}, total ${s(r.wallMs)}` +
      `${r.reasons.length ? `\n        ${r.reasons.join('\n        ')}` : ''}`);
  }
  console.log(`  matrix wall time ${(summary.totalMs / 1000).toFixed(1)}s -> ${path.relative(projectRoot, out)}`);
  process.exitCode = results.every((r) => r.status === 'pass') ? 0 : 1;
}

main().catch((e) => {
  console.error(`matrix: ${e.message}`);
  process.exitCode = 2;
});
