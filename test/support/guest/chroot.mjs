// sid's kernel headers run tools linked against sid's glibc and name sid's
// own compiler (e.g. x86_64-linux-gnu-gcc-15): modules for it are built in
// a cached `debootstrap --variant=minbase sid` chroot that has that compiler.
// kmod/scripts/build-matrix.sh finds the chroot (.cache/**/chroot-<suite>)
// by the compiler binary inside it.
import fs from 'node:fs';
import path from 'node:path';
import { HarnessError, cacheRoot, sh } from './kernels.mjs';

export const SID_CHROOT = path.join(cacheRoot, 'kernels', 'chroot-sid');
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/** The compiler a headers tree was configured with, e.g. "x86_64-linux-gnu-gcc-15". */
export function headersCompiler(headersDir) {
  const conf = path.join(headersDir, 'include/config/auto.conf');
  const m = /^CONFIG_CC_VERSION_TEXT="(\S+)/m.exec(fs.readFileSync(conf, 'utf8'));
  if (!m) throw new HarnessError('ENOCC', `no CONFIG_CC_VERSION_TEXT in ${conf}`);
  return m[1];
}

/**
 * Creates (once) the sid chroot and makes sure it has `cc` (the headers'
 * compiler) plus make and libelf. Runs apt only inside the chroot.
 */
export function ensureSidChroot(headersDir, { log = () => {} } = {}) {
  const cc = headersCompiler(headersDir);
  const ccVersion = /gcc-(\d+)$/.exec(cc)?.[1];
  if (!ccVersion) throw new HarnessError('ENOCC', `unexpected compiler ${cc} in ${headersDir}`);
  const pkgs = [`gcc-${ccVersion}`, 'make', 'libc6-dev', 'libelf-dev', 'bc'];
  if (!fs.existsSync(path.join(SID_CHROOT, 'usr/bin/apt-get'))) {
    log(`debootstrap --variant=minbase sid into ${SID_CHROOT} (once)`);
    fs.rmSync(SID_CHROOT, { recursive: true, force: true });
    sh('debootstrap', ['--variant=minbase', `--keyring=${KEYRING}`, `--include=${pkgs.join(',')}`,
      'sid', SID_CHROOT, 'http://deb.debian.org/debian'], { timeoutMs: 1_200_000 });
  }
  if (!fs.existsSync(path.join(SID_CHROOT, 'usr/bin', cc))) {
    log(`installing ${pkgs.join(' ')} in the sid chroot for ${cc}`);
    sh('chroot', [SID_CHROOT, 'apt-get', '-q', 'update'], { timeoutMs: 300_000 });
    sh('chroot', [SID_CHROOT, 'apt-get', '-q', '-y', '--no-install-recommends', 'install', ...pkgs],
      { env: { DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: 900_000 });
  }
  if (!fs.existsSync(path.join(SID_CHROOT, 'usr/bin', cc))) {
    throw new HarnessError('ENOCC', `${cc} still missing in ${SID_CHROOT}`);
  }
  return { chroot: SID_CHROOT, cc };
}
