// The eBPF backend as tests drive it: attached to a cgroup the test made,
// pinned in a bpffs instance the test mounted, never the machine's root
// cgroup or /sys/fs/bpf. Used by test/bpf-*.test.ts on the host and
// test/kernel/bpf-*.test.ts in the guests.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { isMainThread } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { Backend, BackendConfig } from './spec/behaviour';
import type { FuzzBackend } from './spec/fuzz';
import { attach, cgroup2Root, configure, detach, status } from '../src/bpf/index';
import type { BpfStatus, Counters } from '../src/bpf/index';

const root = fileURLToPath(new URL('..', import.meta.url));

/** $TOA_BPF_OBJ, else the object `make -C bpf` builds (built here when missing). */
export function bpfObject(): string {
  if (process.env.TOA_BPF_OBJ) return process.env.TOA_BPF_OBJ;
  return made(path.join(root, 'bpf'), 'dist/toa.bpf.o', ['toa.bpf.c', 'toa_bpf.h']);
}

/** `dir`/`obj`, run `make -C dir` first only when it is missing or older than a source. */
function made(dir: string, obj: string, sources: string[]): string {
  const out = path.join(dir, obj);
  const stale = !fs.existsSync(out) || sources.some((s) => fs.statSync(path.join(dir, s)).mtimeMs > fs.statSync(out).mtimeMs);
  if (stale) execFileSync('make', ['-s', '-C', dir], { stdio: 'pipe' });
  return out;
}

/**
 * An object the verifier refuses, built by `make -C test/fixtures/bpf`: by the
 * guest harness before a guest boots (arm64 guests have no clang), here otherwise.
 */
export function verifierRejectObject(): string {
  return made(path.join(root, 'test/fixtures/bpf'), 'build/verifier-reject.bpf.o', ['verifier-reject.bpf.c']);
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('eBPF backend tests need root (BPF, cgroups, netns): run them as root');
}

/** The v2 cgroup this process is in, as a directory. */
export function ownCgroup(): string {
  const line = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
  if (!line) throw new Error('this process is in no cgroup v2 hierarchy');
  return path.join(cgroup2Root(), line.slice(3));
}

export function moveTo(cgroup: string, pid = process.pid): void {
  fs.writeFileSync(path.join(cgroup, 'cgroup.procs'), `${pid}\n`);
}

export function kernelAtLeast(major: number, minor: number): boolean {
  const [ma, mi] = os.release().split('.').map((x) => parseInt(x, 10));
  return ma > major || (ma === major && mi >= minor);
}

/**
 * Before 5.18 a cgroup getsockopt program can only clear the error or cause
 * EFAULT (bpf/toa.bpf.c, sockopt_fail): EINVAL and ENOTCONN stay the
 * kernel's own ENOPROTOOPT there.
 */
export function bpfErrno(code: string): string {
  return kernelAtLeast(5, 18) || code === 'EFAULT' ? code : 'ENOPROTOOPT';
}

/** A scratch cgroup + private bpffs; everything removed by cleanup(). */
export class Sandbox {
  readonly cgroup: string;
  readonly bpffs: string;
  readonly pinDir: string;

  constructor(tag: string) {
    requireRoot();
    this.cgroup = path.join(cgroup2Root(), `toa-bpf-${tag}-${process.pid}`);
    fs.mkdirSync(this.cgroup, { recursive: true });
    this.bpffs = fs.mkdtempSync(path.join(os.tmpdir(), 'toa-bpffs-'));
    execFileSync('mount', ['-t', 'bpf', 'bpf', this.bpffs]);
    this.pinDir = path.join(this.bpffs, 'node-toa');
  }

  attach(config: BackendConfig = {}): Promise<BpfStatus> {
    return attach({
      cgroup: this.cgroup, pinDir: this.pinDir, object: bpfObject(),
      ipv4Kinds: config.ipv4Kinds ?? [200], ipv6Kinds: config.ipv6Kinds ?? [253], trusted: config.trusted ?? [],
      ports: config.ports ?? [],
    });
  }

  status(): Promise<BpfStatus> {
    return status({ pinDir: this.pinDir });
  }

  async counters(): Promise<Counters> {
    const s = await this.status();
    if (!s.counters) throw new Error('backend not loaded');
    return s.counters;
  }

  async cleanup(): Promise<void> {
    await detach({ pinDir: this.pinDir });
    spawnSync('umount', [this.bpffs]);
    fs.rmSync(this.bpffs, { recursive: true, force: true });
    // a process still in it (a child being reaped) keeps rmdir at EBUSY briefly
    for (let i = 0; i < 100 && fs.existsSync(this.cgroup); i++) {
      try {
        fs.rmdirSync(this.cgroup);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
        execFileSync('sleep', ['0.02']);
      }
    }
  }
}

/**
 * The shared behaviour suite's Backend: this test process moves into the
 * sandbox cgroup while enabled, so the servers runCase() starts are covered.
 * Only safe in a process of its own (vitest's forks pool), never a thread
 * sharing the process with other test files.
 */
export function bpfBackend(tag: string): Backend & { sandbox(): Sandbox } {
  let box: Sandbox | undefined;
  let home: string | undefined;
  return {
    name: 'eBPF',
    errno: bpfErrno,
    sandbox() {
      if (!box) throw new Error('backend not enabled');
      return box;
    },
    async enable(config: BackendConfig) {
      if (!box) {
        if (!isMainThread) throw new Error('bpfBackend moves the whole process into a cgroup: run this file in the forks pool');
        box = new Sandbox(tag);
        await box.attach(config);
        home = ownCgroup();
        moveTo(box.cgroup);
        return;
      }
      await configure({
        pinDir: box.pinDir,
        ipv4Kinds: config.ipv4Kinds ?? [200], ipv6Kinds: config.ipv6Kinds ?? [253], trusted: config.trusted ?? [],
        ports: config.ports ?? [],
      });
    },
    async disable() {
      if (!box) return;
      if (home) moveTo(home);
      await box.cleanup();
      box = undefined;
    },
  };
}

/** bpfBackend with the counters test/spec/fuzz.ts adds up. */
export function bpfFuzzBackend(tag: string): FuzzBackend {
  const b = bpfBackend(tag);
  return { ...b, counters: async () => ({ ...(await b.sandbox().counters()) }) };
}
