// Boots one stock Debian kernel under QEMU with the harness's initramfs
// (test/support/guest: host root over 9p, overlay, chroot) and runs
// bench/guest-job.mjs in it. The harness's runGuest() runs the vitest
// suite; the bench needs its own job, so only the boot is shared.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { acquireLock, lockFile } from '../../test/support/guest/kernels.mjs';
import { BenchError, cacheDir, onCleanup, root, sh } from './sys.mjs';

// The guest the module's own tests use most; installed on the host by
// linux-image-6.12-amd64 / linux-headers-6.12-amd64 (.ci/run).
const KERNEL_PREFIX = '6.12.';

function pickKernel() {
  const kver = fs.readdirSync('/boot').map((f) => /^vmlinuz-(.*)$/.exec(f)?.[1])
    .filter((v) => v && v.startsWith(KERNEL_PREFIX)).sort().at(-1);
  if (!kver) throw new BenchError('ENOKERNEL', `no /boot/vmlinuz-${KERNEL_PREFIX}*: install linux-image-6.12-amd64`);
  const headers = `/usr/src/linux-headers-${kver}`;
  const modDir = `/lib/modules/${kver}`;
  for (const p of [headers, modDir]) if (!fs.existsSync(p)) throw new BenchError('ENOKERNEL', `${p} is missing`);
  return { kver, vmlinuz: `/boot/vmlinuz-${kver}`, modDir, modBase: '/', headersDir: headers };
}

/** toa.ko from the current kmod/ sources, built out of tree into .cache/bench. */
function buildModule(k, tag) {
  const work = path.join(cacheDir, `kmod${tag}`, k.kver);
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(path.join(work, 'uapi'), { recursive: true });
  const src = path.join(root, 'kmod');
  for (const f of fs.readdirSync(src)) {
    if (/\.(c|h)$/.test(f) || f === 'Kbuild') fs.copyFileSync(path.join(src, f), path.join(work, f));
  }
  fs.copyFileSync(path.join(src, 'uapi', 'toa.h'), path.join(work, 'uapi', 'toa.h'));
  sh('make', ['-s', '-C', k.headersDir, `M=${work}`, 'modules']);
  const ko = path.join(work, 'toa.ko');
  if (!fs.existsSync(ko)) throw new BenchError('EKMOD', `kmod build produced no ${ko}`);
  return ko;
}

/**
 * The guest harness's lock (test/support/guest: one guest at a time on this
 * machine). Waits at most until `deadline`; 0 means not at all.
 */
async function guestLock(deadline, log) {
  const file = lockFile('guest');
  let release;
  try {
    release = await acquireLock(file, {
      deadline,
      pollMs: 200,
      onWait: (owner) => log(`waiting for the guest lock held by pid ${owner}`),
    });
  } catch (e) {
    if (e.code !== 'EBUSY') throw e;
    throw new BenchError('EBUSY', deadline
      ? `another guest (pid ${e.owner}, ${file}) kept the machine's one guest slot past the bench's budget`
      : `another guest (pid ${e.owner}, ${file}) holds the machine's one guest slot`);
  }
  const undo = onCleanup(release);
  return () => { release(); undo(); };
}

const TROUBLE = /\b(Oops|BUG:|Kernel panic|Call Trace:|WARNING: CPU|general protection fault|soft lockup|hung_task|RCU stall)/;

// what the guest job needs once booted, full run (quick: about half)
const GUEST_NEEDS_MS = 190000;

/**
 * Boots the guest and runs the job. With `wait` false it gives up at once
 * (code EBUSY) when another guest holds the slot, so the caller can do its
 * host work first and come back with `wait` true. `job` is another guest
 * script (bench/scale.mjs runs bench/lib/scale-job.mjs), given the same first
 * three arguments, then `job.args`; it needs `job.needsMs` once booted.
 */
export async function guestBench(tools, { quick, log, deadlineMs: budgetMs, wait = true, memMb = 2048, job }) {
  const start = Date.now();
  if (budgetMs < 90000) throw new BenchError('EBUDGET', `only ${Math.round(budgetMs / 1000)} s left for the guest`);
  const { buildInitramfs } = await import(path.join(root, 'test/support/guest/guest.mjs'));
  const k = pickKernel();
  // a job of its own builds and boots in directories of its own: `npm run bench`
  // wipes its module and guest directories before taking the guest lock
  const tag = job ? `-${path.basename(job.script, '.mjs')}` : '';
  const ko = buildModule(k, tag);
  const initramfs = buildInitramfs(k);
  const needsMs = job?.needsMs ?? (quick ? GUEST_NEEDS_MS / 2 : GUEST_NEEDS_MS);
  const lockDeadline = wait ? start + budgetMs - needsMs : 0;
  const unlock = await guestLock(lockDeadline, log);
  try {
    return await boot(k, ko, initramfs, tools, { quick, log, memMb, job, tag, deadlineMs: budgetMs - (Date.now() - start) });
  } finally {
    unlock();
  }
}

async function boot(k, ko, initramfs, tools, { quick, log, memMb, job, tag, deadlineMs }) {
  const dir = path.join(cacheDir, `guest${tag}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const innerS = Math.floor((deadlineMs - 40000) / 1000);
  fs.writeFileSync(path.join(dir, 'boot.env'), `KVER='${k.kver}'\nMODDIR='${k.modDir}'\n`);
  fs.writeFileSync(path.join(dir, 'job.sh'), `set -u
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
R=/mnt/results
ip link set lo up
for m in veth tun; do modprobe $m || echo "bench: modprobe $m failed" >> $R/job.err; done
cd '${root}'
# progress lines (stderr) also go to the serial console, where the host shows them
{ timeout -k 5 ${innerS} node ${job?.script ?? 'bench/guest-job.mjs'} '${ko}' '${JSON.stringify(tools)}' $R/bench.json ${(job?.args ?? [quick ? 1 : 0]).join(' ')}; echo $? > $R/rc; } 2>&1 | tee -a $R/job.err > /dev/console
dmesg > $R/dmesg.txt
`);
  const args = [
    '-accel', 'tcg,thread=multi', '-cpu', 'max', '-smp', '2', '-m', String(memMb),
    '-nographic', '-no-reboot', '-nic', 'none',
    '-kernel', k.vmlinuz, '-initrd', initramfs,
    // slab_nomerge: the module's toa_entry cache keeps its own line in slabinfo
    '-append', 'console=ttyS0 panic=-1 oops=panic loglevel=4 slab_nomerge',
    '-virtfs', 'local,path=/,mount_tag=hostroot,readonly=on,security_model=none,multidevs=remap',
    '-virtfs', `local,path=${dir},mount_tag=results,security_model=none`,
  ];
  const t0 = Date.now();
  const consoleLog = fs.openSync(path.join(dir, 'console.log'), 'w');
  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const undo = onCleanup(() => qemu.kill('SIGKILL'));
  let consoleText = '';
  let partial = '';
  const onData = (d) => {
    fs.writeSync(consoleLog, d);
    consoleText += d.toString('utf8');
    const lines = (partial + d.toString('utf8')).split('\n');
    partial = lines.pop();
    for (const line of lines) if (/^\[guest /.test(line.trim())) log(line.trim());
  };
  qemu.stdout.on('data', onData);
  qemu.stderr.on('data', onData);
  const killer = setTimeout(() => qemu.kill('SIGKILL'), deadlineMs);
  const exit = await new Promise((resolve, reject) => {
    qemu.on('error', (e) => reject(new BenchError('ENOQEMU', `qemu-system-x86_64: ${e.message}`)));
    qemu.on('exit', (code, sig) => resolve(sig ?? code));
  });
  clearTimeout(killer);
  undo();
  fs.closeSync(consoleLog);
  const wallMs = Date.now() - t0;
  const resultFile = path.join(dir, 'bench.json');
  const dmesg = fs.existsSync(path.join(dir, 'dmesg.txt')) ? fs.readFileSync(path.join(dir, 'dmesg.txt'), 'utf8') : '';
  const trouble = TROUBLE.exec(consoleText) ?? TROUBLE.exec(dmesg);
  if (trouble) throw new BenchError('EKERNEL', `guest kernel reported "${trouble[0]}": see ${dir}/console.log`);
  if (!fs.existsSync(resultFile)) {
    const err = fs.existsSync(path.join(dir, 'job.err')) ? fs.readFileSync(path.join(dir, 'job.err'), 'utf8').slice(-800) : '';
    const tail = (err || consoleText).replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '').trim().split('\n').slice(-6).join(' | ');
    throw new BenchError('EGUEST', `guest (exit ${exit}, ${Math.round(wallMs / 1000)} s) wrote no results: ${tail}`);
  }
  const res = JSON.parse(fs.readFileSync(resultFile, 'utf8'));
  res.wallSeconds = Math.round(wallMs / 1000);
  res.kernel = `${k.kver} (QEMU TCG)`;
  return res;
}
