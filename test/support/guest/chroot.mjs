// Kernel headers name the exact compiler the kernel was built with
// (bullseye: gcc-10, sid: x86_64-linux-gnu-gcc-15...), and newer suites'
// kbuild tools need their own glibc. When the host lacks that compiler,
// modules are built in a cached `debootstrap --variant=minbase <suite>`
// chroot that has it. kmod/scripts/build-matrix.sh finds the chroot
// (.cache/**/chroot-<suite>) by the compiler binary inside it.
import fs from 'node:fs';
import path from 'node:path';
import { HarnessError, cacheRoot, sh } from './kernels.mjs';

const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/** The compiler a headers tree was configured with, e.g. "x86_64-linux-gnu-gcc-15". */
export function headersCompiler(headersDir) {
  const conf = path.join(headersDir, 'include/config/auto.conf');
  // quoted up to 6.x, bare in 7.x
  const m = /^CONFIG_CC_VERSION_TEXT="?(\S+)/m.exec(fs.readFileSync(conf, 'utf8'));
  if (!m) throw new HarnessError('ENOCC', `no CONFIG_CC_VERSION_TEXT in ${conf}`);
  return m[1];
}

function onHost(cc) {
  return sh('sh', ['-c', `command -v ${cc}`], { allowFail: true }).status === 0;
}

/**
 * Returns null when the host has the headers' compiler; otherwise creates
 * (once) the suite's chroot and makes sure it has that compiler plus make
 * and libelf. apt runs only inside the chroot.
 */
export function ensureBuildChroot(suite, headersDir, { log = () => {} } = {}) {
  const cc = headersCompiler(headersDir);
  if (onHost(cc)) return null;
  const dir = path.join(cacheRoot, 'kernels', `chroot-${suite}`);
  const ccVersion = /gcc-(\d+)$/.exec(cc)?.[1];
  if (!ccVersion) throw new HarnessError('ENOCC', `unexpected compiler ${cc} in ${headersDir}`);
  const pkgs = [`gcc-${ccVersion}`, 'make', 'libc6-dev', 'libelf-dev', 'bc'];
  // modules get BTF when the kernel has it: pahole must exist (a real error otherwise)
  const btf = /^CONFIG_DEBUG_INFO_BTF_MODULES=y/m.test(fs.readFileSync(path.join(headersDir, 'include/config/auto.conf'), 'utf8'));
  if (btf) pkgs.push(suite === 'bullseye' ? 'dwarves' : 'pahole');
  const ready = () => fs.existsSync(path.join(dir, 'usr/bin', cc)) && (!btf || fs.existsSync(path.join(dir, 'usr/bin/pahole')));
  if (!fs.existsSync(path.join(dir, 'usr/bin/apt-get'))) {
    log(`debootstrap --variant=minbase ${suite} into ${dir} (once)`);
    fs.rmSync(dir, { recursive: true, force: true });
    sh('debootstrap', ['--variant=minbase', `--keyring=${KEYRING}`, `--include=${pkgs.join(',')}`,
      suite, dir, 'http://deb.debian.org/debian'], { timeoutMs: 1_200_000 });
  }
  if (!ready()) {
    log(`installing ${pkgs.join(' ')} in the ${suite} chroot for ${cc}`);
    // the mirror here may serve a frozen snapshot whose Valid-Until has passed
    sh('chroot', [dir, 'apt-get', '-q', '-o', 'Acquire::Check-Valid-Until=false', 'update'], { timeoutMs: 300_000 });
    sh('chroot', [dir, 'apt-get', '-q', '-y', '--no-install-recommends', 'install', ...pkgs],
      { env: { DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: 900_000 });
  }
  if (!ready()) {
    throw new HarnessError('ENOCC', `${cc}${btf ? ' or pahole' : ''} still missing in ${dir}`);
  }
  return { chroot: dir, cc };
}
