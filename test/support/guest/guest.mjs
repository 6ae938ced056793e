// Boots one Debian kernel under QEMU (TCG) with the host's root file system
// shared read-only over 9p (plus a tmpfs overlay and chroot), runs the kernel
// test suite inside, and brings back the vitest JSON report, the console and
// the kernel log through a second, writable 9p share.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HarnessError, cacheRoot, projectRoot, sh } from './kernels.mjs';

/**
 * Kernel command line of every guest. oops=panic + panic=-1 + -no-reboot:
 * an oops ends the guest at once, visibly. kfence.sample_interval=1: KFENCE
 * (built into Debian's kernels, but off by default: sample interval 0)
 * samples an allocation every millisecond, so out-of-bounds and
 * use-after-free accesses of the code under test get caught and reported
 * (dmesg.mjs fails the run on any report). Kernels without KFENCE ignore it.
 */
export const KERNEL_ARGS = 'panic=-1 oops=panic loglevel=5 kfence.sample_interval=1';

/**
 * QEMU per guest architecture, all TCG (-cpu max: every feature QEMU
 * emulates). arm64: the `virt` board (PCIe, so virtio-9p-pci as on x86; a
 * PL011 UART); pauth-impdef: QEMU's own pointer-authentication hash instead
 * of the architected QARMA, which is much slower to emulate — Debian's
 * arm64 kernels sign return addresses (CONFIG_ARM64_PTR_AUTH_KERNEL).
 */
export const MACHINES = {
  amd64: { qemu: 'qemu-system-x86_64', args: ['-cpu', 'max'], console: 'ttyS0' },
  arm64: { qemu: 'qemu-system-aarch64', args: ['-M', 'virt', '-cpu', 'max,pauth-impdef=on'], console: 'ttyAMA0' },
};

// Modules the initramfs needs before it can reach the host root. Whatever
// is built in (virtio_pci on 6.12, for example) is simply not listed.
const INITRAMFS_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'];

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "TOA-GUEST-FAIL $*"; sync; poweroff -f; }
for m in $(cat /mods/order); do insmod /mods/$m || fail "insmod $m"; done
mkdir -p /lower /results /upper /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results /results || fail "mount results"
. /results/boot.env
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /lower || fail "mount host root"
mount -t tmpfs -o size=1g tmpfs /upper && mkdir -p /upper/u /upper/w /upper/pu /upper/pw
# the root: the host's own, or (foreign guests) a root of that architecture's packages on the host
mount -t overlay overlay -o lowerdir=/lower$GUEST_ROOT,upperdir=/upper/u,workdir=/upper/w /newroot || fail "overlay"
# foreign guests: the project tree over that root, plus its arch-specific
# files (copied: as a lower layer they would overlap the tree they live in)
if [ -n "$PROJECT_LAYERS" ]; then
  mkdir -p /newroot$PROJECT
  mount -t overlay overlay -o lowerdir=/lower$PROJECT,upperdir=/upper/pu,workdir=/upper/pw /newroot$PROJECT || fail "project overlay"
  for l in $PROJECT_LAYERS; do cp -a /lower$l/. /newroot$PROJECT/ || fail "project layer $l"; done
  # the host's npm is JavaScript: the tests that pack and install the package use it here too
  if [ -d /lower/usr/lib/node_modules/npm ]; then
    mkdir -p /newroot/usr/lib/node_modules/npm && mount --bind /lower/usr/lib/node_modules/npm /newroot/usr/lib/node_modules/npm
    ln -sf ../lib/node_modules/npm/bin/npm-cli.js /newroot/usr/bin/npm
    ln -sf ../lib/node_modules/npm/bin/npx-cli.js /newroot/usr/bin/npx
  fi
fi
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm && mount -t devpts devpts /newroot/dev/pts && mount -t tmpfs tmpfs /newroot/dev/shm
mount -t tmpfs tmpfs /newroot/run
mount -t cgroup2 none /newroot/sys/fs/cgroup || fail "cgroup2"
mount -t bpf bpf /newroot/sys/fs/bpf || fail "bpffs"
mount -t debugfs none /newroot/sys/kernel/debug 2>/dev/null
mount -t tracefs none /newroot/sys/kernel/tracing 2>/dev/null
mkdir -p /newroot/mnt/results && mount --bind /results /newroot/mnt/results
mkdir -p /newroot/lib/modules/$KVER && mount --bind /newroot$MODDIR /newroot/lib/modules/$KVER || fail "modules bind"
echo "TOA-GUEST-START $(cut -d' ' -f1 /proc/uptime)"
chroot /newroot /bin/bash /mnt/results/job.sh
echo "TOA-GUEST-END $(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
`;

function decompressTo(src, dst) {
  if (src.endsWith('.xz')) fs.writeFileSync(dst, sh('xz', ['-dc', src], { encoding: 'buffer' }).stdout);
  else if (src.endsWith('.zst')) sh('zstd', ['-q', '-d', '-f', src, '-o', dst]);
  else if (src.endsWith('.gz')) fs.writeFileSync(dst, sh('gzip', ['-dc', src]).stdout);
  else fs.copyFileSync(src, dst);
}

/** Busybox + the 9p/overlay modules of this kernel (decompressed: busybox insmod cannot). */
export function buildInitramfs(k, { busybox = '/bin/busybox' } = {}) {
  if (!fs.existsSync(busybox)) throw new HarnessError('ENOPREREQ', 'busybox-static is not installed (/bin/busybox)');
  const deps = [];
  for (const m of INITRAMFS_MODULES) {
    const out = sh('modprobe', ['-d', k.modBase, '-S', k.kver, '--show-depends', m]).stdout;
    for (const line of out.split('\n')) {
      const mm = /^insmod (\S+)/.exec(line);
      if (mm && !deps.includes(mm[1])) deps.push(mm[1]);
    }
  }
  const hash = createHash('sha256').update(INIT).update(deps.join('\n')).update(busybox).digest('hex').slice(0, 12);
  const out = path.join(cacheRoot, 'guest', `initramfs-${k.kver}-${hash}.cpio.gz`);
  if (fs.existsSync(out)) return out;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'toa-initramfs-'));
  try {
    for (const d of ['bin', 'mods', 'proc', 'sys', 'dev']) fs.mkdirSync(path.join(tmp, d));
    fs.copyFileSync(busybox, path.join(tmp, 'bin/busybox'));
    fs.chmodSync(path.join(tmp, 'bin/busybox'), 0o755);
    const names = deps.map((d) => {
      const name = path.basename(d).replace(/\.(xz|zst|gz)$/, '');
      decompressTo(d, path.join(tmp, 'mods', name));
      return name;
    });
    fs.writeFileSync(path.join(tmp, 'mods/order'), names.join('\n') + '\n');
    fs.writeFileSync(path.join(tmp, 'init'), INIT, { mode: 0o755 });
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const list = sh('find', ['.'], { cwd: tmp }).stdout;
    const cpio = sh('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: tmp, input: list, encoding: 'buffer' }).stdout;
    const gz = sh('gzip', ['-1'], { input: cpio, encoding: 'buffer' }).stdout;
    fs.writeFileSync(`${out}.tmp`, gz);
    fs.renameSync(`${out}.tmp`, out);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}

function shellQuote(s) {
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

/**
 * Writes the job the guest runs in the chroot: kernel modules the tests
 * need, then vitest on the kernel suite with a JSON report into the share.
 */
function writeJob(resultsDir, { k, env, vitestArgs, innerTimeoutS, selftest }) {
  const exports = Object.entries(env).map(([n, v]) => `export ${n}=${shellQuote(v)}`).join('\n');
  // foreign guests (k.userland: arm64-root.mjs): their root, and the project tree overlaid on it
  const u = k.userland;
  fs.writeFileSync(path.join(resultsDir, 'boot.env'), `KVER=${shellQuote(k.kver)}\nMODDIR=${shellQuote(k.modDir)}\n` +
    `GUEST_ROOT=${shellQuote(u ? u.root : '')}\nPROJECT=${shellQuote(projectRoot)}\nPROJECT_LAYERS=${shellQuote(u ? u.layers.join(' ') : '')}\n`);
  fs.writeFileSync(path.join(resultsDir, 'job.sh'), `set -u
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
${exports}
R=/mnt/results
ip link set lo up
# arm64 logs a user task's fatal fault only with this on (x86 by default):
# a test runner that dies by a signal then names where
echo 1 > /proc/sys/debug/exception-trace
# prerequisites of the LB emulator and the kernel tests: missing ones fail the run
for m in tun veth; do
  modprobe $m || { echo "TOA-GUEST-FAIL modprobe $m"; echo 97 > $R/rc; dmesg > $R/dmesg.txt; exit 0; }
done
cd ${shellQuote(projectRoot)}
${u ? `# build/ holds this machine's x86 addon and loader: the package must find prebuilds/linux-${k.arch}
rm -rf build` : ''}
echo "guest: kernel $(uname -r), node $(node --version), $(nproc) cpus"
export TOA_PROGRESS_FILE=$R/progress.jsonl
run_suite() {
  timeout -k 10 ${innerTimeoutS} node node_modules/vitest/vitest.mjs run --config vitest.kernel.config.ts \\
    --reporter=default --reporter=json --outputFile.json=$R/vitest.json \\
    --reporter=${shellQuote(path.join(projectRoot, 'test/support/guest/progress-reporter.mjs'))} ${vitestArgs.map(shellQuote).join(' ')} "$@"
}
run_suite
rc=$?
# The runner itself (vitest's main process: no code under test, the test
# files run in its forks) killed by SIGILL, SIGBUS or SIGSEGV: seen once on
# arm64 under TCG. Run the files that did not finish once more, and leave
# the evidence for the matrix, which reports it; a second fault fails.
case $rc in 132|135|139)
  done_files=$(node -e 'const fs=require("fs");for(const l of fs.readFileSync(process.argv[1],"utf8").split("\\n"))try{const r=JSON.parse(l);if(r.type==="file-end")console.log(require("path").relative(process.cwd(),r.file))}catch{}' $R/progress.jsonl 2>/dev/null)
  echo "$rc" > $R/runner-crash
  echo "$done_files" > $R/runner-crash-finished
  set -- ; for f in $done_files; do set -- "$@" --exclude "$f"; done
  run_suite --passWithNoTests "$@"
  rc=$?
  # this run's JSON covers only the rerun: the matrix reads progress.jsonl
  rm -f $R/vitest.json ;;
esac
echo $rc > $R/rc
cat /sys/module/kfence/parameters/sample_interval > $R/kfence-interval 2>/dev/null
${selftest ? `# detector self-test, last: its WARN taints the kernel (its init fails by design).
# By now KFENCE's pool (255 objects) is past skip_covered_thresh (75%; sid
# showed 199-208 allocated after 25-700 s), where it skips every allocation
# whose stack hash is in its bloom filter of live stacks (mm/kfence/core.c).
# The self-test allocates from one stack, so a collision skips all of its
# tries (seen once in CI on sid). Drop the caches (some of the pool is cache
# objects: 201 -> 165 seen), then turn the skip off.
sync; echo 3 > /proc/sys/vm/drop_caches
[ -e /sys/module/kfence/parameters/skip_covered_thresh ] && echo 100 > /sys/module/kfence/parameters/skip_covered_thresh
cat /sys/kernel/debug/kfence/stats > $R/kfence-stats.txt 2>/dev/null
insmod ${shellQuote(selftest.ko)} nonce=${selftest.nonce} 2>/dev/null` : ''}
dmesg > $R/dmesg.txt
`);
}

/**
 * Boots `k` and runs the suite. Resolves with the raw outcome; the matrix
 * turns it into pass/fail. `onConsole` receives the guest console line by line.
 */
export async function runGuest(k, { initramfs, resultsDir, env, selftest = null, vitestArgs = [], innerTimeoutS = 900, bootTimeoutS = 150, memMb = 2048, cpus = 2, onConsole = () => {} }) {
  // what an earlier guest wrote here; the build logs the matrix put here stay
  for (const f of ['rc', 'vitest.json', 'progress.jsonl', 'dmesg.txt', 'kfence-interval', 'console.log']) fs.rmSync(path.join(resultsDir, f), { force: true });
  fs.mkdirSync(resultsDir, { recursive: true });
  writeJob(resultsDir, { k, env, vitestArgs, innerTimeoutS, selftest });
  const m = MACHINES[k.arch ?? 'amd64'];
  const args = [
    ...m.args, '-accel', 'tcg,thread=multi', '-smp', String(cpus), '-m', String(memMb),
    '-nographic', '-no-reboot', '-nic', 'none',
    '-kernel', k.vmlinuz, '-initrd', initramfs,
    '-append', `console=${m.console} ${KERNEL_ARGS}`,
    '-virtfs', 'local,path=/,mount_tag=hostroot,readonly=on,security_model=none,multidevs=remap',
    '-virtfs', `local,path=${resultsDir},mount_tag=results,security_model=none`,
  ];
  const consoleFile = fs.openSync(path.join(resultsDir, 'console.log'), 'w');
  const t0 = Date.now();
  const outcome = { startedAt: new Date(t0).toISOString(), bootMs: null, testMs: null, wallMs: null, timedOut: false, exit: null };
  const proc = spawn(m.qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  // an interrupted matrix must not leave a guest running
  const onSignal = (sig) => {
    proc.kill('SIGKILL');
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const outerMs = (innerTimeoutS + bootTimeoutS) * 1000;
  const killer = setTimeout(() => { outcome.timedOut = true; proc.kill('SIGKILL'); }, outerMs);
  let partial = '';
  let guestStart = null;
  const onData = (d) => {
    fs.writeSync(consoleFile, d);
    partial += d.toString('utf8');
    const lines = partial.split(/\r?\n/);
    partial = lines.pop();
    for (const line of lines) {
      const m = /TOA-GUEST-START/.exec(line);
      if (m && outcome.bootMs === null) {
        guestStart = Date.now();
        outcome.bootMs = guestStart - t0;
      }
      if (/TOA-GUEST-END/.test(line) && guestStart) outcome.testMs = Date.now() - guestStart;
      onConsole(line);
    }
  };
  proc.stdout.on('data', onData);
  proc.stderr.on('data', onData);
  // boot must reach the chroot within bootTimeoutS even if tests may take longer
  const bootKiller = setTimeout(() => {
    if (outcome.bootMs === null) { outcome.timedOut = true; proc.kill('SIGKILL'); }
  }, bootTimeoutS * 1000);
  outcome.exit = await new Promise((resolve, reject) => {
    proc.on('error', (e) => reject(new HarnessError('ENOPREREQ', `${m.qemu}: ${e.message}`)));
    proc.on('exit', (code, sig) => resolve(sig ?? code));
  });
  clearTimeout(killer);
  clearTimeout(bootKiller);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  if (partial) onConsole(partial);
  fs.closeSync(consoleFile);
  outcome.wallMs = Date.now() - t0;
  return outcome;
}
