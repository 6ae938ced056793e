// The eBPF backend's loader: `node-toa bpf attach|detach|status|set` and the
// same operations for programs (tests, `node-toa doctor`).
//
// State lives in the kernel, not in files: programs and maps are pinned under
// one bpffs directory (default /sys/fs/bpf/node-toa), including a small map
// recording the cgroup they are attached to. Attachments use
// BPF_F_ALLOW_MULTI, so other programs on the same cgroup keep working.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { release } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { Bpftool, bytesOf, findBpftool } from './bpftool';
import {
  COUNTER_NAMES, DEFAULT_IPV4_KINDS, DEFAULT_IPV6_KINDS, cidrKey, cidrOfKey, decodeConfig, encodeConfig, hex,
  normalizeTrusted, parseKinds, u32le, u64le,
} from './encode';
import type { BpfConfig, Counters } from './encode';
import { BpfError } from './errors';

export { BpfError } from './errors';
export type { BpfErrorCode } from './errors';
export type { BpfConfig, Counters, CounterName } from './encode';
export { COUNTER_NAMES } from './encode';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/node-toa';
/** 5.10: skb_data in sockops and the header-option callbacks; getpeername hooks need 5.8 */
const MIN_KERNEL: [number, number] = [5, 10];

/** program name (kernel, <= 15 chars) -> bpftool attach type */
const PROGRAMS = {
  toa_sockops: 'sock_ops',
  toa_peername4: 'getpeername4',
  toa_peername6: 'getpeername6',
  toa_getsockopt: 'getsockopt',
} as const;
type ProgName = keyof typeof PROGRAMS;
const PROG_NAMES = Object.keys(PROGRAMS) as ProgName[];

export interface BpfOptions {
  /** bpffs directory holding the pins (default /sys/fs/bpf/node-toa) */
  pinDir?: string;
  /** bpftool binary (default: $TOA_BPFTOOL, then PATH and the sbin dirs) */
  bpftool?: string;
}

export interface AttachOptions extends BpfOptions, Partial<BpfConfig> {
  /** cgroup v2 directory, absolute or relative to the cgroup2 mount (default: its root) */
  cgroup?: string;
  /** compiled object (default: $TOA_BPF_OBJ, then bpf/dist/toa.bpf.o of this package) */
  object?: string;
}

export interface ConfigureOptions extends BpfOptions, Partial<BpfConfig> {}

export interface Attachment {
  cgroup: string;
  program: ProgName;
  attachType: string;
  id: number;
}

export interface BpfStatus {
  loaded: boolean;
  pinDir: string;
  kernel: string;
  /** the programs attached, and where (one cgroup per pin directory) */
  attachments: Attachment[];
  /** the cgroup that has all four programs ([] when none has) */
  cgroups: string[];
  config?: BpfConfig;
  counters?: Counters;
}

interface Ctx {
  tool: Bpftool;
  pinDir: string;
}

function ctxOf(o: BpfOptions): Ctx {
  const pinDir = resolve(o.pinDir ?? process.env.TOA_BPF_PIN_DIR ?? DEFAULT_PIN_DIR);
  return { tool: new Bpftool(findBpftool(o.bpftool)), pinDir };
}

const progPath = (c: Ctx, name: ProgName) => join(c.pinDir, 'progs', name);
const mapPath = (c: Ctx, name: string) => join(c.pinDir, 'maps', name);

interface Mount { dir: string; type: string }

function mounts(): Mount[] {
  return readFileSync('/proc/mounts', 'utf8').split('\n').filter(Boolean).map((line) => {
    const [, dir, type] = line.split(' ');
    return { dir: dir.replace(/\\040/g, ' '), type };
  });
}

/** The cgroup v2 mount, wherever the distribution put it (hybrid: .../unified). */
export function cgroup2Root(): string {
  const m = mounts().find((x) => x.type === 'cgroup2');
  if (!m) {
    throw new BpfError('ERR_TOA_BPF_NO_CGROUP2',
      'no cgroup2 filesystem is mounted: mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) or boot with systemd.unified_cgroup_hierarchy');
  }
  return m.dir;
}

export function resolveCgroup(cgroup?: string): string {
  const root = cgroup2Root();
  const path = cgroup === undefined ? root : isAbsolute(cgroup) ? resolve(cgroup) : resolve(root, cgroup);
  if (path !== root && !path.startsWith(`${root}/`)) {
    throw new BpfError('ERR_INVALID_ARG_VALUE', `cgroup ${path} is not inside the cgroup2 mount ${root}`);
  }
  if (!existsSync(path) || !statSync(path).isDirectory()) {
    throw new BpfError('ERR_INVALID_ARG_VALUE', `cgroup ${path} does not exist`);
  }
  return path;
}

function mountOf(path: string): Mount | undefined {
  let best: Mount | undefined;
  for (const m of mounts()) {
    if ((path === m.dir || path.startsWith(m.dir === '/' ? '/' : `${m.dir}/`)) && (!best || m.dir.length >= best.dir.length)) best = m;
  }
  return best;
}

/** Pins need a bpf filesystem; /sys/fs/bpf is mounted on demand, as systemd would. */
function ensureBpffs(pinDir: string): void {
  const parent = dirname(pinDir);
  if (mountOf(parent)?.type === 'bpf') return;
  if (parent === '/sys/fs/bpf') {
    try {
      execFileSync('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf'], { stdio: 'pipe' });
    } catch (e) {
      throw new BpfError('ERR_TOA_BPF_NO_BPFFS', `cannot mount bpffs on /sys/fs/bpf: ${(e as Error).message}`);
    }
    if (mountOf(parent)?.type === 'bpf') return;
  }
  throw new BpfError('ERR_TOA_BPF_NO_BPFFS', `${parent} is not on a bpf filesystem (mount -t bpf bpf ${parent})`);
}

function kernelTooOld(rel: string): boolean {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  if (!m) return false;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  return maj < MIN_KERNEL[0] || (maj === MIN_KERNEL[0] && min < MIN_KERNEL[1]);
}

/** bpf/dist/toa.bpf.o of the package this file belongs to (src/bpf or dist/cjs/bpf). */
export function defaultObject(): string {
  if (process.env.TOA_BPF_OBJ) return resolve(process.env.TOA_BPF_OBJ);
  // __dirname: compiled CommonJS (dist/cjs/bpf); cwd when run from sources as ESM
  for (let dir = typeof __dirname === 'string' ? __dirname : process.cwd(); ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && /"name"\s*:\s*"node-toa"/.test(readFileSync(pkg, 'utf8'))) {
      return join(dir, 'bpf', 'dist', 'toa.bpf.o');
    }
    if (dirname(dir) === dir) throw new BpfError('ERR_TOA_BPF_NO_OBJECT', 'cannot locate the node-toa package to find bpf/dist/toa.bpf.o; pass object or set TOA_BPF_OBJ');
  }
}

async function progIds(c: Ctx): Promise<Map<ProgName, number>> {
  const ids = new Map<ProgName, number>();
  for (const name of PROG_NAMES) {
    if (!existsSync(progPath(c, name))) continue;
    const info = await c.tool.json<{ id: number }>(['prog', 'show', 'pinned', progPath(c, name)]);
    ids.set(name, info.id);
  }
  return ids;
}

const STATE_SIZE = 4096; // struct toa_bpf_state
const STATE_PATH_MAX = STATE_SIZE - 16;

interface State { ino: number; attached: number; path: string }

async function readState(c: Ctx): Promise<State | undefined> {
  if (!existsSync(mapPath(c, 'toa_state'))) return undefined;
  const r = await c.tool.json<{ value: unknown }>(['map', 'lookup', 'pinned', mapPath(c, 'toa_state'), 'key', 'hex', ...hex(u32le(0))]);
  const b = Buffer.from(bytesOf(r.value));
  const len = b.readUInt32LE(12);
  if (!len) return undefined;
  return { ino: Number(b.readBigUInt64LE(0)), attached: b.readUInt32LE(8), path: b.subarray(16, 16 + Math.min(len, STATE_PATH_MAX)).toString() };
}

async function writeState(c: Ctx, s: State | undefined): Promise<void> {
  const b = Buffer.alloc(STATE_SIZE);
  if (s) {
    const path = Buffer.from(s.path);
    b.writeBigUInt64LE(BigInt(s.ino), 0);
    b.writeUInt32LE(s.attached, 8);
    b.writeUInt32LE(path.length, 12);
    path.copy(b, 16);
  }
  await c.tool.run(['map', 'update', 'pinned', mapPath(c, 'toa_state'), 'key', 'hex', ...hex(u32le(0)), 'value', 'hex', ...hex([...b])]);
}

/**
 * Where the pinned programs are attached. The record in toa_state says
 * where the loader put them; the kernel is asked too when it can answer
 * (BPF_PROG_QUERY through bpftool fails on kernels older than bpftool's
 * UAPI), so a program someone detached by hand is not reported.
 */
async function findAttachments(c: Ctx, ids: Map<ProgName, number>): Promise<Attachment[]> {
  const st = ids.size ? await readState(c) : undefined;
  if (!st) return [];
  // a removed cgroup took its attachments with it
  if (!existsSync(st.path) || statSync(st.path).ino !== st.ino) return [];
  const recorded = PROG_NAMES.filter((n, i) => st.attached & (1 << i) && ids.has(n));
  let names: ProgName[] = recorded;
  try {
    const shown = await c.tool.json<Array<{ id: number }>>(['cgroup', 'show', st.path]);
    const live = new Set(shown.map((p) => p.id));
    names = PROG_NAMES.filter((n) => live.has(ids.get(n) ?? -1));
  } catch {
    // kernel too old for this bpftool's query: the record stands
  }
  return names.map((program) => ({ cgroup: st.path, program, attachType: PROGRAMS[program], id: ids.get(program)! }));
}

function fullyAttached(attachments: Attachment[]): string[] {
  const per = new Map<string, Set<ProgName>>();
  for (const a of attachments) {
    if (!per.has(a.cgroup)) per.set(a.cgroup, new Set());
    per.get(a.cgroup)!.add(a.program);
  }
  return [...per].filter(([, s]) => s.size === PROG_NAMES.length).map(([cg]) => cg);
}

async function readConfig(c: Ctx): Promise<BpfConfig> {
  const cfg = await c.tool.json<{ value: unknown }>(['map', 'lookup', 'pinned', mapPath(c, 'toa_config'), 'key', 'hex', ...hex(u32le(0))]);
  const decoded = decodeConfig(bytesOf(cfg.value));
  const dump = await c.tool.json<Array<{ key: unknown }>>(['map', 'dump', 'pinned', mapPath(c, 'toa_trusted')]);
  return {
    ipv4Kinds: decoded.ipv4Kinds,
    ipv6Kinds: decoded.ipv6Kinds,
    trusted: dump.map((e) => cidrOfKey(bytesOf(e.key))),
  };
}

async function readCounters(c: Ctx): Promise<Counters> {
  const dump = await c.tool.json<Array<{ key: unknown; values: Array<{ value: unknown }> }>>(
    ['map', 'dump', 'pinned', mapPath(c, 'toa_stats')]);
  const counters = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as Counters;
  for (const e of dump) {
    const idx = u64le(bytesOf(e.key));
    const name = COUNTER_NAMES[idx];
    if (name) counters[name] = e.values.reduce((sum, v) => sum + u64le(bytesOf(v.value)), 0);
  }
  return counters;
}

async function writeConfig(c: Ctx, want: BpfConfig): Promise<void> {
  const trie = mapPath(c, 'toa_trusted');
  const dump = await c.tool.json<Array<{ key: unknown }>>(['map', 'dump', 'pinned', trie]);
  const have = new Set(dump.map((e) => bytesOf(e.key).join(',')));
  const keys = want.trusted.map(cidrKey);
  const wanted = new Set(keys.map((k) => k.join(',')));
  // new ranges before the switch, stale ones after: never a moment where a
  // range that stays trusted is missing
  for (const k of keys) {
    if (!have.has(k.join(','))) await c.tool.run(['map', 'update', 'pinned', trie, 'key', 'hex', ...hex(k), 'value', 'hex', '01']);
  }
  await c.tool.run(['map', 'update', 'pinned', mapPath(c, 'toa_config'), 'key', 'hex', ...hex(u32le(0)),
    'value', 'hex', ...hex(encodeConfig(want))]);
  for (const k of have) {
    if (!wanted.has(k)) await c.tool.run(['map', 'delete', 'pinned', trie, 'key', 'hex', ...hex(k.split(',').map(Number))]);
  }
}

function wantedConfig(o: Partial<BpfConfig>, base: BpfConfig): BpfConfig {
  return {
    ipv4Kinds: o.ipv4Kinds === undefined ? base.ipv4Kinds : parseKinds(o.ipv4Kinds, 'ipv4Kinds'),
    ipv6Kinds: o.ipv6Kinds === undefined ? base.ipv6Kinds : parseKinds(o.ipv6Kinds, 'ipv6Kinds'),
    trusted: o.trusted === undefined ? base.trusted : normalizeTrusted(o.trusted),
  };
}

const DEFAULTS: BpfConfig = { ipv4Kinds: DEFAULT_IPV4_KINDS, ipv6Kinds: DEFAULT_IPV6_KINDS, trusted: [] };

function isLoaded(c: Ctx): boolean {
  return PROG_NAMES.every((n) => existsSync(progPath(c, n)));
}

export async function status(o: BpfOptions = {}): Promise<BpfStatus> {
  const c = ctxOf(o);
  const base: BpfStatus = { loaded: false, pinDir: c.pinDir, kernel: release(), attachments: [], cgroups: [] };
  if (!isLoaded(c)) {
    // half-made state (interrupted attach): report what is attached anyway
    base.attachments = await findAttachments(c, await progIds(c));
    return base;
  }
  const attachments = await findAttachments(c, await progIds(c));
  return {
    ...base,
    loaded: true,
    attachments,
    cgroups: fullyAttached(attachments),
    config: await readConfig(c),
    counters: await readCounters(c),
  };
}

/** Changes kinds / trusted ranges of the loaded programs, effective for the next connection. */
export async function configure(o: ConfigureOptions): Promise<BpfConfig> {
  const c = ctxOf(o);
  if (!isLoaded(c)) throw new BpfError('ERR_TOA_BPF_NOT_LOADED', `nothing loaded under ${c.pinDir}: run attach first`);
  const want = wantedConfig(o, await readConfig(c));
  await writeConfig(c, want);
  return want;
}

async function detachAll(c: Ctx, attachments: Attachment[]): Promise<void> {
  // sockops first: no new socket gets an entry while the readers go away
  const ordered = [...attachments].sort((a, b) => Number(b.program === 'toa_sockops') - Number(a.program === 'toa_sockops'));
  for (const a of ordered) await c.tool.run(['cgroup', 'detach', a.cgroup, a.attachType, 'id', String(a.id)]);
  if (attachments.length) await writeState(c, undefined);
}

function unpin(c: Ctx): void {
  // unlinking the last pin frees maps and programs; socket storage goes with the map
  rmSync(c.pinDir, { recursive: true, force: true });
}

/**
 * Loads (once), configures and attaches the four programs to a cgroup.
 * Idempotent for the same cgroup: a second call only applies the config.
 */
export async function attach(o: AttachOptions = {}): Promise<BpfStatus> {
  const c = ctxOf(o);
  if (process.getuid?.() !== 0) throw new BpfError('ERR_TOA_BPF_NOT_ROOT', 'attaching BPF programs needs root (CAP_SYS_ADMIN, CAP_BPF, CAP_NET_ADMIN)');
  if (kernelTooOld(release())) {
    throw new BpfError('ERR_TOA_BPF_KERNEL_TOO_OLD', `kernel ${release()} is older than ${MIN_KERNEL.join('.')}: use the kernel module (kmod/)`);
  }
  // Both would answer getsockopt 4096 and rewrite getpeername: the module
  // wins every time, so an attached BPF backend would only mislead.
  if (existsSync('/sys/module/toa')) {
    throw new BpfError('ERR_TOA_BPF_KMOD_LOADED', 'the toa kernel module is loaded: it already provides TOA (rmmod toa to use the eBPF backend)');
  }
  const cgroup = resolveCgroup(o.cgroup);
  const object = resolve(o.object ?? defaultObject());
  if (!existsSync(object)) {
    throw new BpfError('ERR_TOA_BPF_NO_OBJECT', `${object} is missing: build it with "make -C bpf" (needs clang)`);
  }
  ensureBpffs(c.pinDir);

  if (isLoaded(c)) {
    const attachments = await findAttachments(c, await progIds(c));
    const elsewhere = attachments.find((a) => a.cgroup !== cgroup);
    if (elsewhere) {
      throw new BpfError('ERR_TOA_BPF_ALREADY_ATTACHED',
        `already attached to ${elsewhere.cgroup} (pins in ${c.pinDir}): detach first, or use another pin directory`);
    }
    await writeConfig(c, wantedConfig(o, await readConfig(c)));
    await attachMissing(c, cgroup, attachments);
    return status(o);
  }

  // leftovers of an interrupted run would make loadall fail on existing pins
  const stale = await findAttachments(c, await progIds(c));
  await detachAll(c, stale);
  unpin(c);
  mkdirSync(c.pinDir, { recursive: true });
  try {
    await c.tool.run(['prog', 'loadall', object, join(c.pinDir, 'progs'), 'pinmaps', join(c.pinDir, 'maps')]);
  } catch (e) {
    unpin(c);
    const err = e as BpfError;
    throw new BpfError('ERR_TOA_BPF_LOAD', `the kernel refused the programs in ${object}: ${err.message}`, err.detail);
  }
  try {
    for (const name of PROG_NAMES) {
      if (!existsSync(progPath(c, name))) {
        const found = readdirSync(join(c.pinDir, 'progs')).join(', ');
        throw new BpfError('ERR_TOA_BPF_LOAD', `program ${name} missing after load (pinned: ${found}): object and loader disagree`);
      }
    }
    await writeConfig(c, wantedConfig(o, DEFAULTS));
    await attachMissing(c, cgroup, []);
  } catch (e) {
    await detachAll(c, await findAttachments(c, await progIds(c))).catch(() => undefined);
    unpin(c);
    throw e;
  }
  return status(o);
}

async function attachMissing(c: Ctx, cgroup: string, have: Attachment[]): Promise<void> {
  if (Buffer.byteLength(cgroup) > STATE_PATH_MAX) throw new BpfError('ERR_INVALID_ARG_VALUE', `cgroup path longer than ${STATE_PATH_MAX} bytes`);
  const state: State = { ino: statSync(cgroup).ino, attached: 0, path: cgroup };
  for (const a of have) if (a.cgroup === cgroup) state.attached |= 1 << PROG_NAMES.indexOf(a.program);
  // readers before the writer: a socket that gets an entry can always be asked
  const order: ProgName[] = ['toa_getsockopt', 'toa_peername4', 'toa_peername6', 'toa_sockops'];
  for (const name of order) {
    const bit = 1 << PROG_NAMES.indexOf(name);
    if (state.attached & bit) continue;
    try {
      await c.tool.run(['cgroup', 'attach', cgroup, PROGRAMS[name], 'pinned', progPath(c, name), 'multi']);
      state.attached |= bit;
      await writeState(c, state);
    } catch (e) {
      const err = e as BpfError;
      throw new BpfError('ERR_TOA_BPF_ATTACH',
        `cannot attach ${name} to ${cgroup} (a program attached there without BPF_F_ALLOW_MULTI blocks it): ${err.message}`, err.detail);
    }
  }
}

/** Detaches from every cgroup and unpins. Resolves false when nothing was loaded. */
export async function detach(o: BpfOptions = {}): Promise<boolean> {
  const c = ctxOf(o);
  const ids = await progIds(c);
  if (!ids.size && !existsSync(c.pinDir)) return false;
  await detachAll(c, await findAttachments(c, ids));
  unpin(c);
  return true;
}

// ---- command line ----

const USAGE = `usage: node-toa bpf <command> [options]

  attach   load the eBPF backend and attach it to a cgroup (v2)
           --cgroup PATH        cgroup directory, absolute or relative to the
                                cgroup2 mount (default: its root = whole machine)
           --ipv4-kinds LIST    option kinds carrying an IPv4 client (default 200)
           --ipv6-kinds LIST    option kinds carrying an IPv6 client (default 253)
           --trusted LIST       balancer/SNAT source CIDRs to honour (default: all)
           --object FILE        compiled object (default bpf/dist/toa.bpf.o)
  set      change --ipv4-kinds / --ipv6-kinds / --trusted of the attached backend
           (--trusted "" trusts every source again)
  status   show attachments, configuration and counters   [--json]
  detach   detach from every cgroup and remove the pins

  common:  --pin-dir DIR (default ${DEFAULT_PIN_DIR}), --bpftool PATH
Needs root, Linux >= 5.10 with BTF, cgroup v2 and the bpftool package.`;

const VALUE_FLAGS = new Set(['--cgroup', '--ipv4-kinds', '--ipv6-kinds', '--trusted', '--object', '--pin-dir', '--bpftool']);
const BOOL_FLAGS = new Set(['--json', '--help', '-h']);

function parseArgs(argv: string[]): { cmd?: string; flags: Map<string, string | true> } {
  const flags = new Map<string, string | true>();
  let cmd: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const name = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    if (VALUE_FLAGS.has(name)) {
      const v = eq > 0 && a.startsWith('--') ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new BpfError('ERR_INVALID_ARG_VALUE', `${name} needs a value`);
      flags.set(name, v);
    } else if (BOOL_FLAGS.has(a)) {
      flags.set(a, true);
    } else if (!a.startsWith('-') && cmd === undefined) {
      cmd = a;
    } else {
      throw new BpfError('ERR_INVALID_ARG_VALUE', `unknown argument ${a}`);
    }
  }
  return { cmd, flags };
}

function str(flags: Map<string, string | true>, name: string): string | undefined {
  const v = flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

function formatStatus(s: BpfStatus): string {
  if (!s.loaded && !s.attachments.length) return `not attached (no pins under ${s.pinDir})`;
  const lines = [`pins       ${s.pinDir}${s.loaded ? '' : ' (incomplete)'}`, `kernel     ${s.kernel}`];
  if (s.cgroups.length) lines.push(...s.cgroups.map((cg) => `attached   ${cg}`));
  const partial = s.attachments.filter((a) => !s.cgroups.includes(a.cgroup));
  lines.push(...partial.map((a) => `partial    ${a.cgroup} ${a.program}`));
  if (!s.attachments.length) lines.push('attached   nowhere');
  if (s.config) {
    lines.push(`ipv4-kinds ${s.config.ipv4Kinds.join(',')}`, `ipv6-kinds ${s.config.ipv6Kinds.join(',')}`,
      `trusted    ${s.config.trusted.length ? s.config.trusted.join(',') : '(every source)'}`);
  }
  if (s.counters) {
    lines.push('counters');
    for (const [k, v] of Object.entries(s.counters)) lines.push(`  ${k.padEnd(22)} ${v}`);
  }
  return lines.join('\n');
}

function configFlags(flags: Map<string, string | true>): Partial<BpfConfig> {
  const out: Partial<BpfConfig> = {};
  const v4 = str(flags, '--ipv4-kinds');
  const v6 = str(flags, '--ipv6-kinds');
  const tr = str(flags, '--trusted');
  if (v4 !== undefined) out.ipv4Kinds = parseKinds(v4, '--ipv4-kinds');
  if (v6 !== undefined) out.ipv6Kinds = parseKinds(v6, '--ipv6-kinds');
  if (tr !== undefined) out.trusted = normalizeTrusted(tr);
  return out;
}

/**
 * `node-toa bpf ...`: argv without the leading "bpf". Resolves the exit
 * code: 0 done, 1 failed (message on stderr), 2 usage error, 3 status: not attached.
 */
export async function runBpfCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`node-toa bpf: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { cmd, flags } = parsed;
  if (flags.has('--help') || flags.has('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!cmd) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const common: BpfOptions = { pinDir: str(flags, '--pin-dir'), bpftool: str(flags, '--bpftool') };
  try {
    switch (cmd) {
      case 'attach': {
        const s = await attach({ ...common, ...configFlags(flags), cgroup: str(flags, '--cgroup'), object: str(flags, '--object') });
        process.stdout.write(flags.has('--json') ? `${JSON.stringify(s, null, 2)}\n` : `${formatStatus(s)}\n`);
        return 0;
      }
      case 'set': {
        const cfg = configFlags(flags);
        if (!Object.keys(cfg).length) throw new BpfError('ERR_INVALID_ARG_VALUE', 'set: give --ipv4-kinds, --ipv6-kinds or --trusted');
        await configure({ ...common, ...cfg });
        process.stdout.write(`${formatStatus(await status(common))}\n`);
        return 0;
      }
      case 'status': {
        const s = await status(common);
        process.stdout.write(flags.has('--json') ? `${JSON.stringify(s, null, 2)}\n` : `${formatStatus(s)}\n`);
        return s.cgroups.length ? 0 : 3;
      }
      case 'detach': {
        const was = await detach(common);
        process.stdout.write(was ? 'detached\n' : 'not attached\n');
        return 0;
      }
      default:
        process.stderr.write(`node-toa bpf: unknown command ${cmd}\n${USAGE}\n`);
        return 2;
    }
  } catch (e) {
    const err = e as BpfError;
    process.stderr.write(`node-toa bpf ${cmd}: ${err.code ?? 'ERROR'}: ${err.message}\n`);
    if (err.detail && process.env.TOA_DEBUG) process.stderr.write(`${err.detail}\n`);
    return err.code === 'ERR_INVALID_ARG_VALUE' ? 2 : 1;
  }
}
