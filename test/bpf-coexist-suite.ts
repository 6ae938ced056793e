// Other programs' getsockopt calls under the attached programs: the suite
// shared by test/bpf-coexist.test.ts (this host's kernel) and
// test/kernel/bpf-coexist.test.ts (the guests').
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Sandbox, bpfErrno, requireRoot } from './bpf-support';

const root = fileURLToPath(new URL('..', import.meta.url));

/** test/bpf-sockopt-cases.c, built once per process into a scratch directory. */
function sockoptCases(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'toa-sockopt-'));
  const bin = path.join(dir, 'bpf-sockopt-cases');
  const r = spawnSync('gcc', ['-O2', '-Wall', '-Werror', '-o', bin, path.join(root, 'test/bpf-sockopt-cases.c')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot build bpf-sockopt-cases: ${r.stderr}`);
  return bin;
}

/** Runs the cases inside `cgroup`; one parsed JSON line per call. */
function runCases(bin: string, cgroup: string): Array<Record<string, unknown>> {
  const r = spawnSync('sh', ['-c', `echo $$ > '${path.join(cgroup, 'cgroup.procs')}' && exec "$0"`, bin],
    { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) throw new Error(`bpf-sockopt-cases exited ${r.status}: ${r.stderr}\n${r.stdout}`);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l));
}

/**
 * Every getsockopt unrelated to TOA behaves in the attached cgroup exactly as
 * in one without programs: return value, errno, optlen and bytes, 8 KiB
 * buffers and answers over a page included (bpf/toa.bpf.c, pass()).
 */
export function coexistSuite(tag: string) {
  describe('other programs\' getsockopt calls are untouched', () => {
    let box: Sandbox;
    let bare: string;
    let bin: string;

    beforeAll(async () => {
      requireRoot();
      // the guests' kernels cannot autoload modules (no modprobe where the
      // kernel looks for it): load what iptables-legacy needs; built in on
      // the host, where modprobe has nothing to do. A table that still
      // cannot be made fails the case loudly.
      spawnSync('modprobe', ['-a', 'ip_tables', 'iptable_filter', 'xt_tcpudp'], { stdio: 'ignore' });
      bin = sockoptCases();
      box = new Sandbox(tag);
      bare = `${box.cgroup}-bare`;
      fs.mkdirSync(bare);
    }, 60000);

    afterAll(async () => {
      if (bare) fs.rmdirSync(bare);
      await box?.cleanup();
      if (bin) fs.rmSync(path.dirname(bin), { recursive: true, force: true });
    });

    it('8 KiB buffers, NULL size probes and the iptables-legacy dump: same ret, errno, optlen and bytes', async () => {
      const without = runCases(bin, bare);
      expect(without.find((c) => 'tableBytes' in c)?.tableBytes).toBeGreaterThan(4096);
      await box.attach({});
      const withPrograms = runCases(bin, box.cgroup);
      const others = (r: typeof without) => r.filter((c) => !c.toa);
      const differ = others(withPrograms).filter((c, i) => JSON.stringify(c) !== JSON.stringify(others(without)[i]));
      console.log(`getsockopt coexistence on ${os.release()}: ${others(without).length} calls, ${differ.length} differ`);
      expect(others(withPrograms)).toEqual(others(without));
      // TOA's own options with a buffer over a page: answered, or the kmod's errors
      const toa = Object.fromEntries(withPrograms.filter((c) => c.toa).map((c) => [c.case, [c.errno || c.ret, c.optlen]]));
      expect(toa).toEqual({
        'TOA 4096 8K': [bpfErrno('EINVAL'), 8192],
        'TOA 4097 8K': [0, 56],
        'TOA 4096 8K unconnected': [bpfErrno('ENOTCONN'), 8192],
        'TOA 4097 8K unconnected': [bpfErrno('ENOTCONN'), 8192],
        // not a TCP stream socket: never answered (kmod/uapi/toa.h)
        'TOA 4096 raw': [bpfErrno('ENOTCONN'), 8192],
        'TOA 4097 raw': [bpfErrno('ENOTCONN'), 8192],
        'TOA 4096 raw6': [bpfErrno('ENOTCONN'), 8192],
        'TOA 4097 raw6': [bpfErrno('ENOTCONN'), 8192],
      });
    }, 120000);
  });
}
