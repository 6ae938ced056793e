// The eBPF backend's own operations, timed on this host: a first attach
// (load + 4 links), an upgrade to another build of the object
// (bpf_link_update on every link, pinned maps reused) and a detach, each as
// `node-toa bpf` would do them (one toa-bpf co-process per call). Target:
// attach and upgrade <= 1 s.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { distModule, makeBpffs, makeCgroup, root, sh } from './sys.mjs';
import { summary } from './stats.mjs';

export async function bpfLifecycle({ rounds }) {
  const bpf = distModule('bpf/index.js');
  const cgroup = makeCgroup('lifecycle');
  const pinDir = path.join(makeBpffs(), 'node-toa');
  const a = path.join(root, 'bpf', 'dist', 'toa.bpf.o');
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'toa-bench-stamp-'));
  sh('make', ['-s', '-C', path.join(root, 'bpf'), `OUT=${out}`, 'STAMP=bench']);
  const b = path.join(out, 'toa.bpf.o');
  const times = { attachMs: [], upgradeMs: [], detachMs: [] };
  try {
    for (let i = 0; i < rounds; i++) {
      let t = performance.now();
      await bpf.attach({ cgroup, pinDir, object: a, trusted: ['192.0.2.0/24'] });
      times.attachMs.push(performance.now() - t);
      t = performance.now();
      const up = await bpf.attach({ cgroup, pinDir, object: b });
      times.upgradeMs.push(performance.now() - t);
      if (up.action !== 'upgraded') throw new Error(`expected an upgrade, got ${up.action}`);
      t = performance.now();
      await bpf.detach({ pinDir });
      times.detachMs.push(performance.now() - t);
    }
  } finally {
    await bpf.detach({ pinDir }).catch(() => undefined);
    fs.rmSync(out, { recursive: true, force: true });
  }
  return Object.fromEntries(Object.entries(times).map(([k, v]) => [k, summary(v)]));
}
