#!/usr/bin/env node
// Runs the kernel suite (vitest.kernel.config.ts: test/kernel/**/*.test.ts)
// in a QEMU guest for every Debian kernel of the matrix, one guest at a time.
//
//   node test/support/guest/matrix.mjs [--kernel 6.1] [--kernel 5.10,sid]
//        [--file test/kernel/harness.test.ts] [--inner-timeout 1800]
//        [--env TOA_FUZZ_N=2000] [--allow-skip] [--quiet] [-- <extra vitest args>]
//        [--prepare-only] [--no-prepare-ahead]
//
// Per kernel: resolve + fetch (kernels.mjs), build kmod/ with that kernel's
// headers and compiler (kmod-build.mjs; chroot.mjs), build the initramfs,
// boot, run, collect. Results: .cache/results/runs/<run>/<kver>/{console.log,
// vitest.json,dmesg.txt,kmod-build.log}, the run's kernel-matrix.json, and
// the shared summary .cache/results/kernel-matrix.json (latest entry per
// kernel). Exit status 0 only if every selected kernel passed: an oops,
// panic, hang, build failure, missing prerequisite, skipped or failed test
// is a failure.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { KERNELS, HarnessError, cacheRoot, fetchKernel, lockFile, projectRoot, sh, withLock } from './kernels.mjs';
import { buildInitramfs, runGuest } from './guest.mjs';
import { formatReports, guestReports, kernelLines } from './dmesg.mjs';
import { ensureBuildChroot } from './chroot.mjs';
import { buildKmod, buildSelftest } from './kmod-build.mjs';
import { build as buildLb } from '../lb/index.mjs';
import { ensureArm64Root, ensureArm64Sysroot, ensureNpmLayer } from './arm64-root.mjs';

// the kernel's line for a user task killed by a fault: x86's "segfault at",
// arm64's "unhandled exception" (printed with debug.exception-trace, job.sh)
const USER_FAULT = /^\S+\[\d+\]: (segfault at|unhandled exception:)/;

function parseArgs(argv) {
  const o = { kernels: [], files: [], innerTimeoutS: 1800, allowSkip: false, quiet: false, extra: [], env: {}, prepareOnly: false, prepareAhead: true };
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
    else if (a === '--prepare-only') o.prepareOnly = true;
    else if (a === '--no-prepare-ahead') o.prepareAhead = false;
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

function checkPrerequisites(kernels) {
  const missing = [];
  for (const [bin, pkg] of [['qemu-system-x86_64', 'qemu-system-x86'], ['cpio', 'cpio'], ['modprobe', 'kmod'],
    ['depmod', 'kmod'], ['apt-get', 'apt'], ['dpkg', 'dpkg'], ['xz', 'xz-utils'], ['zstd', 'zstd'],
    ['clang', 'clang'], ['gcc', 'gcc'], ['make', 'make']]) {
    if (sh('sh', ['-c', `command -v ${bin}`], { allowFail: true }).status !== 0) missing.push(`${bin} (${pkg})`);
  }
  if (!fs.existsSync('/bin/busybox')) missing.push('/bin/busybox (busybox-static)');
  if (kernels.some((k) => k.arch === 'arm64')) {
    for (const [bin, pkg] of [['qemu-system-aarch64', 'qemu-system-arm'], ['aarch64-linux-gnu-gcc', 'gcc-aarch64-linux-gnu'], ['aarch64-linux-gnu-g++', 'g++-aarch64-linux-gnu'], ['npm', 'npm']]) {
      if (sh('sh', ['-c', `command -v ${bin}`], { allowFail: true }).status !== 0) missing.push(`${bin} (${pkg})`);
    }
  }
  if (!fs.existsSync(path.join(projectRoot, 'node_modules/vitest/vitest.mjs'))) missing.push('node_modules/vitest (npm ci)');
  if (process.getuid() !== 0) missing.push('root');
  if (missing.length) throw new HarnessError('ENOPREREQ', `missing prerequisites: ${missing.join(', ')}`);
}

function buildBpf() {
  const dir = path.join(projectRoot, 'bpf');
  if (!fs.existsSync(path.join(dir, 'Makefile'))) return null;
  // the test-only objects too: arm64 guests have no clang to build them
  const fixtures = sh('make', ['-s', '-C', path.join(projectRoot, 'test/fixtures/bpf')], { allowFail: true });
  if (fixtures.status !== 0) console.error(`test/fixtures/bpf did not build (make exit ${fixtures.status}):\n${fixtures.stderr}`);
  const r = sh('make', ['-s', '-C', dir], { allowFail: true });
  const obj = path.join(dir, 'dist/toa.bpf.o');
  if (r.status !== 0 || !fs.existsSync(obj)) {
    console.error(`bpf/ did not build (make exit ${r.status}):\n${r.stderr}`);
    return null;
  }
  return obj;
}

/** Whether the kernel's build configuration (its unpacked config-<kver>) sets CONFIG_<opt>=y. */
function kernelHas(k, opt) {
  const conf = [path.join(k.root, 'boot', `config-${k.kver}`), path.join(k.modDir, 'config')].find((f) => fs.existsSync(f));
  if (!conf) throw new HarnessError('ENOENT', `no config-${k.kver} in ${k.root}`);
  return new RegExp(`^CONFIG_${opt}=y$`, 'm').test(fs.readFileSync(conf, 'utf8'));
}

/**
 * What an arm64 guest needs from this machine: the arm64 root, the arm64
 * npm layer, the cross-built LB helper and the arm64 prebuilt addon.
 */
function prepareArm64({ log }) {
  const t0 = Date.now();
  const root = ensureArm64Root({ log });
  const npmLayer = ensureNpmLayer({ log });
  const sysroot = ensureArm64Sysroot({ log });
  const lb = buildLb({ arch: 'arm64', arm64Sysroot: sysroot });
  // the guest runs anyway when it fails: the tests that load the addon then fail themselves
  const r = sh(process.execPath, [path.join(projectRoot, 'scripts/prebuild.mjs'), '--arch', 'arm64'],
    // binding.gyp's toa-bpf links libbpf statically from bpf_libdir: the arm64 one
    { allowFail: true, timeoutMs: 600_000, env: { GYP_DEFINES: `bpf_libdir=${path.join(sysroot, 'usr/lib/aarch64-linux-gnu')}` } });
  const prebuildError = r.status === 0 ? null : `scripts/prebuild.mjs --arch arm64 failed: ${`${r.stdout}${r.stderr}`.split('\n').filter((l) => /error|cannot|prebuild:/i.test(l)).slice(0, 5).join(' / ')}`;
  return { ...root, npmLayer, lbHelper: path.relative(projectRoot, lb.helper), prebuildError, ms: Date.now() - t0 };
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
  // a file can run twice (job.sh reruns what a faulting runner left
  // unfinished): one result per test, and a failure is never replaced
  const files = new Map();
  for (const l of lines) {
    if (!files.has(l.file)) files.set(l.file, { name: l.file, status: 'running', message: '', tests: new Map() });
    const f = files.get(l.file);
    if (l.type === 'test') {
      if (f.tests.get(l.name)?.status !== 'failed') f.tests.set(l.name, { fullName: l.name, status: l.status, duration: l.ms, failureMessages: l.error ? [l.error] : [] });
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
    if ([...f.tests.values()].some((t) => t.status === 'failed')) f.status = 'failed';
  }
  return { testResults: [...files.values()].map(({ tests, ...f }) => ({ ...f, assertionResults: [...tests.values()] })) };
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
  const entry = { id: kernel.id, suite: kernel.suite, date: new Date().toISOString(), status: 'fail', reasons: [], notices: [] };
  let k;
  try {
    const log = (m) => console.log(`[${kernel.id}] ${m}`);
    const onWait = (pid) => log(`waiting for process ${pid} preparing the same kernel`);
    k = await withLock(lockFile(`fetch-${kernel.id}`), () => fetchKernel(kernel, { log }), { onWait });
    if (kernel.arch === 'arm64') {
      const u = await withLock(lockFile('arm64-userland'), () => prepareArm64({ log }), { onWait });
      k.userland = { root: u.root, layers: [u.npmLayer] };
      entry.userland = { suite: 'trixie', node: u.node, packages: u.packages.length, helper: u.lbHelper, prepareMs: u.ms };
      if (u.prebuildError) entry.reasons.push(u.prebuildError);
    }
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
  Object.assign(entry, { kver: k.kver, packages: k.packages, fetchMs: k.fetchMs, kfence: { built: kernelHas(k, 'KFENCE') } });
  const resultsDir = path.join(shared.runDir, k.kver);
  fs.mkdirSync(resultsDir, { recursive: true });
  const kmod = buildKmod(k, { chroot: entry.buildChroot?.chroot, logFile: path.join(resultsDir, 'kmod-build.log') });
  entry.kmod = { status: kmod.status, ko: kmod.ko, buildMs: kmod.ms, cached: kmod.cached ?? false, warnings: kmod.warnings?.length ?? 0 };
  if (kmod.status === 'failed') {
    entry.reasons.push(`kmod build failed${kmod.warnings?.length ? ` (${kmod.warnings.length} warnings)` : ''} (see ${path.relative(projectRoot, resultsDir)}/kmod-build.log)`);
    console.error(`[${kernel.id}] kmod build FAILED:\n${kmod.log}`);
  }
  // the detector's self-test (selftest/): without it, a silent detector would pass every run
  const selftestKo = buildSelftest(k, { chroot: entry.buildChroot?.chroot, logFile: path.join(resultsDir, 'selftest-build.log') });
  if (selftestKo.status !== 'ok') {
    entry.reasons.push(`self-test module build failed (see ${path.relative(projectRoot, resultsDir)}/selftest-build.log)`);
    console.error(`[${kernel.id}] self-test module build FAILED:\n${selftestKo.log}`);
  }
  const nonce = randomBytes(6).toString('hex');
  let initramfs;
  try {
    initramfs = buildInitramfs(k, k.userland ? { busybox: path.join(k.userland.root, 'usr/bin/busybox') } : {});
  } catch (e) {
    entry.reasons.push(`initramfs: ${e.message}`);
    entry.wallMs = Date.now() - t0;
    return entry;
  }
  if (opts.prepareOnly) {
    Object.assign(entry, { status: entry.reasons.length ? 'fail' : 'prepared', wallMs: Date.now() - t0 });
    return entry;
  }
  // Heavy suites scale with TOA_STRESS_* / TOA_FUZZ_* / TOA_NAT64_* (see the test files):
  // taken from the matrix's own environment unless --env names them.
  const scaled = Object.fromEntries(Object.entries(process.env).filter(([n]) => /^TOA_(STRESS|FUZZ|NAT64)_/.test(n)));
  const env = { ...scaled, ...opts.env, TOA_KERNEL: k.kver, CI: '1' };
  if (kmod.ko) Object.assign(env, { TOA_KMOD: kmod.ko, TOA_KMOD_KO: kmod.ko });
  if (shared.bpfObj) env.TOA_BPF_OBJ = shared.bpfObj;
  console.log(`[${kernel.id}] booting ${k.kver} (${k.packages.image})`);
  // one guest at a time on this machine, whoever started the matrix
  const waitFrom = Date.now();
  const outcome = await withLock(lockFile('guest'), () => {
    entry.waitedMs = Date.now() - waitFrom;
    return runGuest(k, {
      initramfs, resultsDir, env, innerTimeoutS: opts.innerTimeoutS,
      selftest: selftestKo.ko ? { ko: selftestKo.ko, nonce } : null,
      vitestArgs: [...(opts.files.length ? opts.files : kernel.files ?? []), ...opts.extra],
      onConsole: (line) => { if (!opts.quiet) console.log(`[${kernel.id}] ${line}`); },
    });
  }, { onWait: (pid) => console.log(`[${kernel.id}] waiting for the guest of process ${pid} to finish`) });
  entry.resultsDir = path.relative(projectRoot, resultsDir);
  const consoleText = fs.readFileSync(path.join(resultsDir, 'console.log'), 'utf8');
  const dmesgFile = path.join(resultsDir, 'dmesg.txt');
  const dmesg = fs.existsSync(dmesgFile) ? fs.readFileSync(dmesgFile, 'utf8') : '';
  const rcFile = path.join(resultsDir, 'rc');
  const rc = fs.existsSync(rcFile) ? Number(fs.readFileSync(rcFile, 'utf8').trim()) : null;
  const interval = path.join(resultsDir, 'kfence-interval');
  // what the running guest reports: proves the command line took effect
  entry.kfence.sampleIntervalMs = fs.existsSync(interval) ? Number(fs.readFileSync(interval, 'utf8').trim()) : null;
  const report = summarize(readReport(path.join(resultsDir, 'vitest.json')) ?? reportFromProgress(path.join(resultsDir, 'progress.jsonl')));
  Object.assign(entry, {
    bootMs: outcome.bootMs, testMs: outcome.testMs, guestWallMs: outcome.wallMs,
    passed: report.passed, failed: report.failed, skipped: report.skipped, total: report.total, files: report.files,
    vitestExit: rc,
  });
  // a foreign guest's own default selection still counts as its whole run
  if (!opts.files.length && kernel.files) entry.subset = { filters: kernel.files, files: report.files.map((f) => f.file) };
  const { reports, selftest } = guestReports({ dmesg, consoleText, nonce });
  entry.kernelReports = reports.map((r) => ({ kind: r.kind, headline: r.headline, lines: r.lines.slice(0, 60) }));
  if (selftestKo.ko && rc !== null) {
    // the job got to the self-test: the reports it triggered must be found
    const expected = ['warn', ...(entry.kfence.built ? ['kfence'] : [])];
    const found = (selftest ?? []).map((r) => r.kind);
    entry.selftest = { expected, found };
    const missing = expected.filter((x) => !found.includes(x));
    if (!selftest) entry.reasons.push('detector self-test: its marker lines are not in the kernel log (module not loaded?)');
    else if (missing.length) {
      // the module says when KFENCE never handed it an object; the pool's state says why
      const noAlloc = /toa-selftest \S+: (no KFENCE allocation[^\n]*)/.exec(dmesg)?.[1];
      const statsFile = path.join(resultsDir, 'kfence-stats.txt');
      const stats = fs.existsSync(statsFile) ? fs.readFileSync(statsFile, 'utf8').trim().split('\n').join(', ') : 'no KFENCE stats';
      entry.reasons.push(`detector self-test: the ${missing.join(' and ')} report(s) it triggered were not detected` +
        (noAlloc ? ` (${noAlloc}; KFENCE before it: ${stats})` : ''));
    }
  }
  // the job reran what a faulting runner left unfinished (job.sh): said on every summary
  // a runner killed by a fault: the kernel's line says which program and where
  const faults = kernelLines(dmesg).filter((l) => USER_FAULT.test(l)).slice(0, 3);
  const crashFile = path.join(resultsDir, 'runner-crash');
  if (fs.existsSync(crashFile)) {
    const signal = Number(fs.readFileSync(crashFile, 'utf8').trim()) - 128;
    const finished = fs.readFileSync(path.join(resultsDir, 'runner-crash-finished'), 'utf8').split('\n').filter(Boolean);
    entry.runnerCrash = { signal, finishedBefore: finished, kernelLines: faults };
    entry.notices.push(`vitest's main process died by signal ${signal} after ${finished.length} file(s)` +
      `${faults.length ? ` (${faults.join(' | ')})` : ''}; the other files ran again in the same guest`);
  }
  const guestFail = consoleText.split('\n').filter((l) => /TOA-GUEST-FAIL/.test(l));
  if (outcome.timedOut) entry.reasons.push(outcome.bootMs === null ? 'guest did not boot in time (hang?)' : 'guest timed out (hang?)');
  if (reports.length) entry.reasons.push(`kernel reports (${reports.length}): ${reports.slice(0, 5).map((r) => `${r.kind}: ${r.headline}`).join(' | ')}`);
  if (entry.kfence.built && rc !== null && entry.kfence.sampleIntervalMs !== 1) entry.reasons.push(`KFENCE sample interval is ${entry.kfence.sampleIntervalMs} in the guest, not 1 (kernel command line?)`);
  if (guestFail.length) entry.reasons.push(`guest prerequisite: ${guestFail.join(' | ')}`);
  if (rc === null && !outcome.timedOut) entry.reasons.push('guest ended without a result (panic or crash before the suite finished)');
  if (rc !== null && rc !== 0) {
    entry.reasons.push(`vitest exited ${rc}${rc === 124 ? ' (inner timeout)' : ''}${rc > 128 ? ` (signal ${rc - 128}${faults.length ? `; ${faults.join(' | ')}` : ''})` : ''}`);
  }
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
    if (reports.length) console.error(`----- kernel reports that failed ${k.kver} -----\n${formatReports(reports)}`);
    console.error(`----- guest kernel log (${dmesg ? 'dmesg' : 'console'}) ${k.kver} -----`);
    console.error((dmesg || consoleText).split('\n').slice(-150).join('\n'));
    console.error('----- end of guest kernel log -----');
  }
  return entry;
}

/** A child `matrix.mjs --prepare-only` for `ids`; its output goes to the console prefixed. */
function prepareAhead(ids) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--prepare-only', '-k', ids.join(',')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const relay = (d) => { for (const l of d.toString().split('\n').filter(Boolean)) console.log(`[prepare-ahead] ${l}`); };
  child.stdout.on('data', relay);
  child.stderr.on('data', relay);
  return { stop: () => { if (child.exitCode === null) child.kill('SIGTERM'); } };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const selected = opts.kernels.length ? KERNELS.filter((k) => opts.kernels.includes(k.id)) : KERNELS;
  checkPrerequisites(selected);
  const t0 = Date.now();
  // everything the guest executes is built here: TCG is ~10x slower
  buildLb();
  // every run keeps its own artefacts: concurrent runs must not clobber each other
  const runDir = path.join(cacheRoot, 'results', 'runs', `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`);
  fs.mkdirSync(runDir, { recursive: true });
  // prepare-only runs beside builds of the project (.ci/run): bpf/ is theirs to build
  const shared = { bpfObj: opts.prepareOnly ? null : buildBpf(), runDir };
  // fetching, unpacking and building for the next kernels (I/O-bound mostly)
  // overlaps this kernel's guest (CPU-bound): a child prepares them in
  // order, the locks in kernels.mjs make this process wait for (and then
  // reuse) whatever it is still preparing
  const ahead = !opts.prepareOnly && opts.prepareAhead && selected.length > 1
    ? prepareAhead(selected.slice(1).map((k) => k.id)) : null;
  const results = [];
  try {
    for (const kernel of selected) results.push(await runKernel(kernel, opts, shared));
  } finally {
    ahead?.stop();
  }
  if (opts.prepareOnly) {
    for (const r of results) console.log(`  ${r.status.toUpperCase()} ${r.id} ${r.kver ?? '?'} prepared in ${((r.wallMs ?? 0) / 1000).toFixed(1)}s${r.reasons.length ? `: ${r.reasons.join('; ')}` : ''}`);
    process.exitCode = results.every((r) => r.status === 'prepared') ? 0 : 1;
    return;
  }
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
      `${[...r.reasons, ...(r.notices ?? []).map((n) => `notice: ${n}`)].map((x) => `\n        ${x}`).join('')}`);
  }
  console.log(`  matrix wall time ${(summary.totalMs / 1000).toFixed(1)}s -> ${path.relative(projectRoot, out)}`);
  process.exitCode = results.every((r) => r.status === 'pass') ? 0 : 1;
}

main().catch((e) => {
  console.error(`matrix: ${e.message}`);
  process.exitCode = 2;
});
