// The loader (toa-bpf + src/bpf) as operators meet it: upgrades under load,
// orphans of an older loader, pins of other tools, non-root users, the
// cgroup root, the systemd unit. Shared by test/bpf-loader.test.ts (this
// host's kernel) and test/kernel/bpf-loader.test.ts (the guests'). Every
// attachment goes to a cgroup the test created; the "cgroup root" case runs
// in a cgroup namespace whose root is such a cgroup.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer } from './support/lb/index.mjs';
import { Sandbox, bpfObject, kernelAtLeast, requireRoot } from './bpf-support';
import { NodeServer } from './bpf-suites';
import { attach, cgroup2Root, detach, status } from '../src/bpf/index';
import { withLoader } from '../src/bpf/loader';

const root = fileURLToPath(new URL('..', import.meta.url));
const CLI = path.join(root, 'dist/cjs/cli.js');
const CLIENT = '198.51.100.7';
const TYPES = { toa_sockops: 3, toa_peername4: 29, toa_peername6: 30, toa_getsockopt: 21 } as const;
const BPFTOOL_TYPES = { toa_sockops: 'sock_ops', toa_peername4: 'getpeername4', toa_peername6: 'getpeername6', toa_getsockopt: 'getsockopt' };

const AS_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--'];

function cli(args: string[], o: { user?: boolean; env?: Record<string, string> } = {}) {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} missing: run npm run build first`);
  // Otherwise node itself fails to load the CLI as that user (exit 1, nothing on
  // stdout), which would read as a wrong answer about permissions.
  if (o.user && spawnSync(AS_NOBODY[0], [...AS_NOBODY.slice(1), '/usr/bin/test', '-r', CLI]).status !== 0) {
    throw new Error(`uid 65534 cannot read ${CLI}: the checkout must be readable by other users ` +
      `(mktemp -d makes it mode 0700; .ci/run opens it): chmod o+rx on ${root} and its parents`);
  }
  const cmd = o.user ? [...AS_NOBODY, process.execPath, CLI, ...args] : [process.execPath, CLI, ...args];
  const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', env: { ...process.env, ...o.env }, timeout: 60000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** ids of the programs attached to the cgroup itself, per program kind */
async function attached(cgroup: string): Promise<Record<string, number[]>> {
  return withLoader(async (l) => Object.fromEntries(await Promise.all(Object.entries(TYPES).map(
    async ([name, type]) => [name, await l.request<number[]>('query', cgroup, type)]))));
}

/** An older loader's way: bpftool attachments without links, then their pins removed by hand. */
function makeOrphans(bpffs: string, cgroup: string): void {
  const dir = path.join(bpffs, `legacy-${process.pid}`);
  fs.mkdirSync(dir);
  execFileSync('bpftool', ['prog', 'loadall', bpfObject(), `${dir}/progs`, 'pinmaps', `${dir}/maps`]);
  for (const [name, type] of Object.entries(BPFTOOL_TYPES)) {
    const pin = fs.readdirSync(`${dir}/progs`).find((f) => f === name || f.startsWith(name.replace('toa_', '')))
      ?? (name === 'toa_sockops' ? 'sockops' : `cgroup_${type}`);
    execFileSync('bpftool', ['cgroup', 'attach', cgroup, type, 'pinned', `${dir}/progs/${pin}`, 'multi']);
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

export function loaderSuite(tag: string) {
  describe('loader: upgrade, orphans, safety, service', () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    let lb: any;
    let box: Sandbox;
    let stamp2: string;
    const stops: Array<() => void> = [];
    const mounts: string[] = [];

    function privateBpffs(mode?: string): string {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'toa-bpffs-'));
      execFileSync('mount', ['-t', 'bpf', ...(mode ? ['-o', `mode=${mode}`] : []), 'bpf', dir]);
      mounts.push(dir);
      return dir;
    }

    beforeAll(async () => {
      requireRoot();
      box = new Sandbox(tag);
      lb = await createLoadBalancer();
      // Another build to upgrade to: the same object with a stamp after its
      // ELF contents (libelf reads by offset, so only the sha256 changes).
      // `make -C bpf STAMP=...` gives the same without this trick, but clang
      // under the guests' TCG takes minutes.
      const out = fs.mkdtempSync(path.join(os.tmpdir(), 'toa-stamp-'));
      stamp2 = path.join(out, 'toa.bpf.o');
      fs.writeFileSync(stamp2, Buffer.concat([fs.readFileSync(bpfObject()), Buffer.from(`node-toa stamp ${tag}-${process.pid}`)]));
    }, 60000);

    afterAll(async () => {
      stops.forEach((s) => s());
      await lb?.close();
      await box?.cleanup();
      for (const m of mounts) {
        spawnSync('umount', [m]);
        fs.rmSync(m, { recursive: true, force: true });
      }
      if (stamp2) fs.rmSync(path.dirname(stamp2), { recursive: true, force: true });
    });

    it('upgrades in place: live connections keep their address, none made meanwhile loses it, one set of programs', async () => {
      let t = Date.now();
      const first = await attach({ cgroup: box.cgroup, pinDir: box.pinDir, object: bpfObject(), trusted: [] });
      const attachMs = Date.now() - t;
      expect(first.action).toBe('loaded');
      const before = await attached(box.cgroup);
      const { srv: s, port } = await NodeServer.start(box.cgroup);
      stops.push(() => s.stop());
      const toa = { kind: 200, address: CLIENT, port: 4321 };
      const live = [];
      for (let i = 0; i < 3; i++) live.push(await lb.connect({ port, family: 4, toa, placement: 'ack' }));
      // new connections while the links switch programs
      let upgrading = true;
      let during = 0;
      const made: unknown[] = [];
      const loop = (async () => {
        while (upgrading) {
          made.push(await lb.connect({ port, family: 4, toa, placement: 'ack' }));
          during++;
        }
      })();
      t = Date.now();
      const up = await attach({ cgroup: box.cgroup, pinDir: box.pinDir, object: stamp2 });
      const upgradeMs = Date.now() - t;
      upgrading = false;
      await loop;
      expect(up.action).toBe('upgraded');
      expect(up.object).not.toBe(first.object);
      const after = await attached(box.cgroup);
      // one program per hook, and not the old one
      for (const name of Object.keys(TYPES)) {
        expect(after[name]).toHaveLength(1);
        expect(after[name][0]).not.toBe(before[name][0]);
      }
      expect(up.attachments.map((a) => a.id).sort()).toEqual(Object.values(after).flat().sort());
      const peers = await s.peers(3 + during);
      const lost = peers.filter(([a, p]) => a !== `::ffff:${CLIENT}` || p !== 4321);
      console.log(`bpf upgrade on ${os.release()}: attach ${attachMs} ms, upgrade ${upgradeMs} ms; `
        + `${during} connections made during the upgrade, ${lost.length} of ${peers.length} without their TOA`);
      expect(peers).toHaveLength(3 + during);
      expect(lost).toEqual([]);
      for (const c of [...live, ...made] as Array<{ close(): Promise<void> }>) await c.close().catch(() => undefined);
      s.stop();
      // the same object again: nothing reloaded, nothing lost
      const again = await attach({ cgroup: box.cgroup, pinDir: box.pinDir, object: stamp2 });
      expect(again.action).toBe('configured');
      expect(await attached(box.cgroup)).toEqual(after);
      expect(await detach({ pinDir: box.pinDir })).toBe(true);
    }, 120000);

    // Loader logic only, and four node processes at once take long under the
    // guests' TCG: defined on the host alone, so a guest never reports it as passed.
    if (!process.env.TOA_KERNEL) it('concurrent attach runs queue on one lock: one set of programs, every run succeeds', async () => {
      const pinDir = path.join(privateBpffs(), 'node-toa');
      const args = ['bpf', 'attach', '--pin-dir', pinDir, '--cgroup', box.cgroup, '--trusted', '192.0.2.0/24', '--object', bpfObject()];
      const runs = await Promise.all(Array.from({ length: 4 }, () => new Promise<number | null>((resolve) => {
        const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        p.stderr!.on('data', (d) => { err += d; });
        p.on('exit', (code) => { if (code) console.log(err); resolve(code); });
      })));
      expect(runs).toEqual([0, 0, 0, 0]);
      const now = await attached(box.cgroup);
      expect(Object.values(now).flat()).toHaveLength(4);
      expect(cli(['bpf', 'detach', '--pin-dir', pinDir]).code).toBe(0);
    }, 60000);

    it('orphans: status reports programs attached without pins, attach adopts them, detach removes them', async () => {
      await detach({ pinDir: box.pinDir });
      makeOrphans(box.bpffs, box.cgroup);
      const orphanIds = Object.values(await attached(box.cgroup)).flat();
      expect(orphanIds).toHaveLength(4);
      const st = await status({ pinDir: box.pinDir, cgroup: box.cgroup });
      expect(st.loaded).toBe(false);
      expect(st.orphans.map((o) => o.id).sort()).toEqual([...orphanIds].sort());
      const r = cli(['bpf', 'status', '--pin-dir', box.pinDir, '--cgroup', box.cgroup]);
      expect(r.code).toBe(3);
      expect(r.out).toMatch(/orphan .* toa_sockops/);
      // without --cgroup: found by walking the tree
      expect((await status({ pinDir: box.pinDir })).orphans).toHaveLength(4);

      const a = await attach({ cgroup: box.cgroup, pinDir: box.pinDir, object: bpfObject(), trusted: ['192.0.2.0/24'] });
      expect(a.adopted.map((o) => o.id).sort()).toEqual([...orphanIds].sort());
      expect(a.orphans).toEqual([]);
      const now = await attached(box.cgroup);
      expect(Object.values(now).flat().sort()).toEqual(a.attachments.map((x) => x.id).sort());

      makeOrphans(box.bpffs, box.cgroup);
      expect(Object.values(await attached(box.cgroup)).flat()).toHaveLength(8);
      expect(await detach({ pinDir: box.pinDir })).toBe(true);
      expect(Object.values(await attached(box.cgroup)).flat()).toEqual([]);
    }, 120000);

    it('detach --pin-dir on a shared bpffs removes our pins only', async () => {
      const shared = privateBpffs();
      fs.mkdirSync(path.join(shared, 'maps'));
      execFileSync('bpftool', ['map', 'create', path.join(shared, 'foreign'), 'type', 'array', 'key', '4', 'value', '4', 'entries', '1', 'name', 'foreign']);
      execFileSync('bpftool', ['map', 'create', path.join(shared, 'maps', 'cilium_x'), 'type', 'array', 'key', '4', 'value', '4', 'entries', '1', 'name', 'cilium_x']);
      let r = cli(['bpf', 'attach', '--pin-dir', shared, '--cgroup', box.cgroup, '--trusted', '192.0.2.0/24', '--object', bpfObject()]);
      expect([r.code, r.err]).toEqual([0, '']);
      r = cli(['bpf', 'detach', '--pin-dir', shared]);
      expect([r.code, r.out]).toEqual([0, 'detached\n']);
      // maps.debug / progs.debug: the kernel's own preloaded iterators (CONFIG_BPF_PRELOAD)
      const left = fs.readdirSync(shared, { recursive: true }).map(String).filter((f) => !/^(maps|progs)\.debug$/.test(f));
      expect(left.sort()).toEqual(['foreign', 'maps', 'maps/cilium_x']);
      expect(Object.values(await attached(box.cgroup)).flat()).toEqual([]);
    }, 60000);

    it('a user without the capabilities is told "permission denied" (exit 4), not "absent"', async () => {
      const closed = privateBpffs('0700');
      const pinDir = path.join(closed, 'node-toa');
      let r = cli(['bpf', 'attach', '--pin-dir', pinDir, '--cgroup', box.cgroup, '--trusted', '192.0.2.0/24', '--object', bpfObject()]);
      expect([r.code, r.err]).toEqual([0, '']);
      r = cli(['bpf', 'status', '--pin-dir', pinDir], { user: true });
      expect([r.code, r.out]).toEqual([4, expect.stringMatching(/^permission denied/)]);
      r = cli(['bpf', 'detach', '--pin-dir', pinDir], { user: true });
      expect([r.code, r.err]).toEqual([4, expect.stringMatching(/ERR_TOA_BPF_PERMISSION_DENIED: permission denied/)]);
      r = cli(['doctor'], { user: true, env: { TOA_BPF_PIN_DIR: pinDir } });
      expect(r.code).toBe(4);
      expect(r.out).toMatch(/permission denied/);
      expect(r.out).not.toMatch(/no TOA provider/);
      r = cli(['bpf', 'detach', '--pin-dir', pinDir]);
      expect(r.code).toBe(0);
    }, 60000);

    it('CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON are enough (no CAP_SYS_ADMIN); without CAP_PERFMON a clear refusal', async () => {
      const pinDir = path.join(privateBpffs(), 'node-toa');
      // uid 0 keeps file access; the bounding set leaves it these capabilities
      const withCaps = (set: string) => (args: string[]) => {
        const r = spawnSync('setpriv', [`--inh-caps=-all,${set}`, `--bounding-set=-all,${set}`, '--', process.execPath, CLI, ...args],
          { encoding: 'utf8', timeout: 60000 });
        return { code: r.status, out: r.stdout, err: r.stderr };
      };
      const attachArgs = ['bpf', 'attach', '--pin-dir', pinDir, '--cgroup', box.cgroup, '--trusted', '192.0.2.0/24', '--object', bpfObject()];
      let r = withCaps('+bpf,+net_admin')(attachArgs);
      expect([r.code, r.err]).toEqual([4, expect.stringMatching(/permission denied: attaching BPF programs needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON/)]);
      // before 5.11 maps are charged to RLIMIT_MEMLOCK (kernel/bpf/syscall.c,
      // -EPERM over it): libbpf raises the limit, which needs CAP_SYS_RESOURCE
      const run = withCaps(kernelAtLeast(5, 11) ? '+bpf,+net_admin,+perfmon' : '+bpf,+net_admin,+perfmon,+sys_resource');
      r = run(attachArgs);
      expect([r.code, r.err]).toEqual([0, '']);
      expect(Object.values(await attached(box.cgroup)).flat()).toHaveLength(4);
      r = run(['bpf', 'status', '--pin-dir', pinDir]);
      expect(r.code).toBe(0);
      r = run(['bpf', 'detach', '--pin-dir', pinDir]);
      expect([r.code, r.out]).toEqual([0, 'detached\n']);
      expect(Object.values(await attached(box.cgroup)).flat()).toEqual([]);
    }, 60000);

    it('at the cgroup root: refused without --trusted, --trust-any warns', async () => {
      // a cgroup namespace whose root is the test's cgroup: "the root" here
      const pinDir = path.join(privateBpffs(), 'node-toa');
      const mnt = cgroup2Root();
      const inRoot = (args: string[]) => {
        const r = spawnSync('sh', ['-c', `echo $$ > '${path.join(box.cgroup, 'cgroup.procs')}' && exec unshare --mount --cgroup --propagation private `
          + `sh -c 'umount -l "${mnt}" && mount -t cgroup2 none "${mnt}" && exec "$0" "$@"' "${process.execPath}" "${CLI}" "$@"`, 'sh', ...args],
        { encoding: 'utf8', timeout: 60000 });
        return { code: r.status, out: r.stdout, err: r.stderr };
      };
      let r = inRoot(['bpf', 'attach', '--pin-dir', pinDir, '--object', bpfObject()]);
      expect([r.code, r.err]).toEqual([1, expect.stringMatching(/ERR_TOA_BPF_UNTRUSTED_ROOT: attaching at the cgroup root .* give --trusted/)]);
      expect(fs.existsSync(pinDir)).toBe(false);
      expect(Object.values(await attached(box.cgroup)).flat()).toEqual([]);
      r = inRoot(['bpf', 'attach', '--pin-dir', pinDir, '--object', bpfObject(), '--trust-any']);
      expect(r.code).toBe(0);
      expect(r.err).toMatch(/warning: every source is trusted on .*this host/);
      expect(Object.values(await attached(box.cgroup)).flat()).toHaveLength(4);
      r = inRoot(['bpf', 'attach', '--pin-dir', pinDir, '--object', bpfObject(), '--trusted', '192.0.2.0/24']);
      expect([r.code, r.err]).toEqual([0, '']);
      expect(cli(['bpf', 'detach', '--pin-dir', pinDir]).code).toBe(0);
      expect(Object.values(await attached(box.cgroup)).flat()).toEqual([]);
    }, 60000);

    it('--no-getsockopt: getpeername rewritten, every getsockopt left to the kernel', async () => {
      const r = cli(['bpf', 'attach', '--pin-dir', box.pinDir, '--cgroup', box.cgroup, '--trusted', '', '--no-getsockopt', '--object', bpfObject()]);
      expect(r.code).toBe(0);
      const now = await attached(box.cgroup);
      expect(now.toa_getsockopt).toEqual([]);
      expect(Object.values(now).flat()).toHaveLength(3);
      expect((await status({ pinDir: box.pinDir })).cgroups).toEqual([box.cgroup]);
      const { srv: s, port } = await NodeServer.start(box.cgroup);
      stops.push(() => s.stop());
      const c = await lb.connect({ port, family: 4, toa: { kind: 200, address: CLIENT, port: 4321 }, placement: 'ack' });
      expect(await s.peers(1)).toEqual([[`::ffff:${CLIENT}`, 4321]]);
      await c.close().catch(() => undefined);
      s.stop();
      expect(await detach({ pinDir: box.pinDir })).toBe(true);
    }, 60000);

    it('install-service writes a unit systemd-analyze accepts, whose ExecStart attaches', async () => {
      const unitDir = fs.mkdtempSync(path.join(os.tmpdir(), 'toa-unit-'));
      try {
        let r = cli(['bpf', 'install-service', '--unit-dir', unitDir, '--no-enable']);
        expect([r.code, r.err]).toEqual([1, expect.stringMatching(/ERR_TOA_BPF_UNTRUSTED_ROOT/)]);
        expect(fs.readdirSync(unitDir)).toEqual([]);
        r = cli(['bpf', 'install-service', '--unit-dir', unitDir, '--no-enable', '--cgroup', box.cgroup,
          '--trusted', '192.0.2.0/24', '--pin-dir', box.pinDir, '--object', bpfObject()]);
        expect(r.code).toBe(0);
        const unit = path.join(unitDir, 'node-toa-bpf.service');
        const text = fs.readFileSync(unit, 'utf8');
        const exec = /^ExecStart=(.*)$/m.exec(text)![1];
        expect(exec).toContain(`${CLI} bpf attach --cgroup ${box.cgroup} --trusted 192.0.2.0/24`);
        const v = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
        expect([v.status, v.stderr.split('\n').filter((l) => l.includes('node-toa-bpf')).join('\n')]).toEqual([0, '']);
        // what systemd would run at boot (plain words: no quoting needed here)
        const words = exec.split(' ');
        const run = spawnSync(words[0], words.slice(1), { encoding: 'utf8' });
        expect([run.status, run.stderr]).toEqual([0, '']);
        expect((await status({ pinDir: box.pinDir })).cgroups).toEqual([box.cgroup]);
        expect(await detach({ pinDir: box.pinDir })).toBe(true);
      } finally {
        fs.rmSync(unitDir, { recursive: true, force: true });
      }
    }, 60000);
  });
}
