// The eBPF backend's loader: `node-toa bpf attach|detach|status|set|install-service`
// and the same operations for programs (tests, `node-toa doctor`).
//
// State lives in the kernel, not in files. Under one bpffs directory (default
// /sys/fs/bpf/node-toa): maps/ holds the maps, links/ one pinned bpf_link per
// attached program. A link lives as long as its pin, so nothing stays
// attached that `status` cannot see, and `detach` is unpinning. The loader
// is the package's own toa-bpf (native/bpf/, libbpf inside): no bpftool.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { release } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import {
  COUNTER_NAMES, DEFAULT_IPV4_KINDS, DEFAULT_IPV6_KINDS, cidrKey, cidrOfKey, decodeConfig, decodePorts, encodeConfig,
  encodePorts, normalizeTrusted, parseKinds, parsePorts, u32le,
} from './encode';
import type { BpfConfig, Counters } from './encode';
import { BpfError } from './errors';
import { Loader, LoaderError, withLoader } from './loader';

export { BpfError } from './errors';
export type { BpfErrorCode } from './errors';
export type { BpfConfig, Counters, CounterName } from './encode';
export { COUNTER_NAMES } from './encode';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/node-toa';
/** 5.10: skb_data in sockops and the header-option callbacks; getpeername hooks need 5.8 */
const MIN_KERNEL: [number, number] = [5, 10];

/** program name (kernel, <= 15 chars) -> attach type (native/bpf/loader.c's names) */
const PROGRAMS = {
  toa_sockops: 'sock_ops',
  toa_peername4: 'getpeername4',
  toa_peername6: 'getpeername6',
  toa_getsockopt: 'getsockopt',
} as const;
type ProgName = keyof typeof PROGRAMS;
const PROG_NAMES = Object.keys(PROGRAMS) as ProgName[];
/** the kernel's enum bpf_attach_type values, stable UAPI */
const ATTACH_TYPE: Record<ProgName, number> = { toa_sockops: 3, toa_peername4: 29, toa_peername6: 30, toa_getsockopt: 21 };
/** every map of bpf/toa.bpf.c: detach removes these pins and no others */
const MAP_NAMES = ['toa_config', 'toa_trusted', 'toa_ports', 'toa_stats', 'toa_state', 'toa_sk'];
/** readers before the writer: a socket that gets an address can always be asked */
const ATTACH_ORDER: ProgName[] = ['toa_getsockopt', 'toa_peername4', 'toa_peername6', 'toa_sockops'];

export interface BpfOptions {
  /** bpffs directory holding the pins (default /sys/fs/bpf/node-toa) */
  pinDir?: string;
}

export interface AttachOptions extends BpfOptions, Partial<BpfConfig> {
  /** cgroup v2 directory, absolute or relative to the cgroup2 mount (default: its root) */
  cgroup?: string;
  /** compiled object (default: $TOA_BPF_OBJ, then bpf/dist/toa.bpf.o of this package) */
  object?: string;
  /**
   * Honour options from every source. Required (with a warning) to attach
   * at the cgroup root without `trusted`: anyone reaching the host directly
   * could then choose the address every server on it sees.
   */
  trustAny?: boolean;
  /** attach the getsockopt program (4096/4097 answers); default true */
  getsockopt?: boolean;
}

export interface ConfigureOptions extends BpfOptions, Partial<BpfConfig> {
  trustAny?: boolean;
}

export interface Attachment {
  cgroup: string;
  program: ProgName;
  attachType: string;
  /** program id */
  id: number;
  /** bpf_link id (undefined for an orphan: attached without a link) */
  link?: number;
}

export interface BpfStatus {
  loaded: boolean;
  /** 'denied': this user may not read the pins (status cannot tell more) */
  access: 'ok' | 'denied';
  pinDir: string;
  kernel: string;
  /** the programs attached through our links, and where */
  attachments: Attachment[];
  /** cgroups that have every program the attach asked for */
  cgroups: string[];
  /**
   * Programs of this backend attached without a link (an older loader, or
   * by hand): they outlive every pin. `attach` adopts them, `detach` removes them.
   */
  orphans: Attachment[];
  /** sha256 of the object the programs were loaded from */
  object?: string;
  config?: BpfConfig;
  counters?: Counters;
}

interface Ctx {
  pinDir: string;
  l: Loader;
}

const linkPath = (c: Ctx, name: ProgName) => join(c.pinDir, 'links', name);
const mapPath = (c: Ctx, name: string) => join(c.pinDir, 'maps', name);

function pinDirOf(o: BpfOptions): string {
  return resolve(o.pinDir ?? process.env.TOA_BPF_PIN_DIR ?? DEFAULT_PIN_DIR);
}

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

/** The directory itself, or the nearest ancestor that exists. */
function existingAncestor(path: string): string {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  return p;
}

/**
 * Pins need a bpf filesystem: the pin directory may be a bpffs mount
 * itself (--pin-dir /sys/fs/bpf) or lie in one; /sys/fs/bpf is mounted on
 * demand, as systemd would.
 */
function ensureBpffs(pinDir: string): void {
  const onBpffs = () => mountOf(existingAncestor(pinDir))?.type === 'bpf';
  if (onBpffs()) return;
  if (pinDir === '/sys/fs/bpf' || pinDir.startsWith('/sys/fs/bpf/')) {
    try {
      execFileSync('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf'], { stdio: 'pipe' });
    } catch (e) {
      throw new BpfError('ERR_TOA_BPF_NO_BPFFS', `cannot mount bpffs on /sys/fs/bpf: ${(e as Error).message}`);
    }
    if (onBpffs()) return;
  }
  throw new BpfError('ERR_TOA_BPF_NO_BPFFS', `${pinDir} is not on a bpf filesystem (mount -t bpf bpf ${dirname(pinDir)})`);
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

// Capability bits (linux/capability.h)
const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;
const CAP_BPF = 39n;

function effectiveCaps(): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

const hasCap = (caps: bigint, cap: bigint) => ((caps >> cap) & 1n) === 1n;

/**
 * Not uid 0 but the capabilities: a service with AmbientCapabilities= is
 * fine. CAP_PERFMON: the option parser's packet-pointer arithmetic is
 * refused without it ("pointer arithmetic with it prohibited for !root").
 */
function requireCaps(what: string): void {
  const caps = effectiveCaps();
  if (hasCap(caps, CAP_SYS_ADMIN) || [CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON].every((c) => hasCap(caps, c))) return;
  throw new BpfError('ERR_TOA_BPF_PERMISSION_DENIED',
    `permission denied: ${what} needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (or CAP_SYS_ADMIN): run it as root`);
}

/** The verifier's last words: the end of the last program log libbpf printed, else the end of it all. */
function verifierTail(log: string): string {
  const lines = log.trim().split('\n');
  const end = lines.map((l) => l.includes('-- END PROG LOAD LOG --')).lastIndexOf(true);
  return (end > 0 ? lines.slice(Math.max(0, end - 30), end + 1) : lines.slice(-40)).join('\n');
}

function denied(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  return code === 'EACCES' || code === 'EPERM';
}

/** Whether a path exists, telling "absent" from "not allowed to look". */
function present(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    if (denied(e)) throw new BpfError('ERR_TOA_BPF_PERMISSION_DENIED', `permission denied: cannot read ${path} (run as root)`);
    throw e;
  }
}

function wrap(e: unknown, code: 'ERR_TOA_BPF_LOADER', what: string): never {
  if (e instanceof BpfError) throw e;
  if (denied(e)) throw new BpfError('ERR_TOA_BPF_PERMISSION_DENIED', `permission denied: ${what}: ${(e as Error).message} (run as root)`);
  throw new BpfError(code, `${what}: ${(e as Error).message}`, (e as LoaderError).log);
}

interface MapInfo { id: number; type: number; keySize: number; valueSize: number; maxEntries: number; name: string }
interface LinkInfo { id: number; progId: number; type: number; attachType?: number; cgroupId?: number }
interface ProgInfo { id: number; type: number; tag: string; name: string }

function hexOf(bytes: number[] | Buffer): string {
  return Buffer.from(bytes).toString('hex');
}

async function lookup(c: Ctx, map: string, key: number[]): Promise<Buffer | undefined> {
  const r = await c.l.request<string | null>('lookup', mapPath(c, map), hexOf(key));
  return r === null ? undefined : Buffer.from(r, 'hex');
}

async function update(c: Ctx, map: string, key: number[], value: number[] | Buffer): Promise<void> {
  await c.l.request('set', mapPath(c, map), hexOf(key), hexOf(value));
}

// ---- state: where the programs are attached, from which object ----

const STATE_SIZE = 4096; // struct toa_bpf_state
const STATE_PATH_OFF = 48;
const STATE_PATH_MAX = STATE_SIZE - STATE_PATH_OFF;

interface State { ino: number; attached: number; path: string; object: string }

async function readState(c: Ctx): Promise<State | undefined> {
  const b = await lookup(c, 'toa_state', u32le(0));
  const len = b?.readUInt32LE(12) ?? 0;
  if (!b || !len) return undefined;
  return {
    ino: Number(b.readBigUInt64LE(0)),
    attached: b.readUInt32LE(8),
    object: b.subarray(16, 48).toString('hex'),
    path: b.subarray(STATE_PATH_OFF, STATE_PATH_OFF + Math.min(len, STATE_PATH_MAX)).toString(),
  };
}

async function writeState(c: Ctx, s: State): Promise<void> {
  const b = Buffer.alloc(STATE_SIZE);
  const path = Buffer.from(s.path);
  if (path.length > STATE_PATH_MAX) throw new BpfError('ERR_INVALID_ARG_VALUE', `cgroup path longer than ${STATE_PATH_MAX} bytes`);
  b.writeBigUInt64LE(BigInt(s.ino), 0);
  b.writeUInt32LE(s.attached, 8);
  b.writeUInt32LE(path.length, 12);
  Buffer.from(s.object, 'hex').copy(b, 16);
  path.copy(b, STATE_PATH_OFF);
  await update(c, 'toa_state', u32le(0), b);
}

// ---- what is attached ----

function cgroupIno(path: string): number | undefined {
  try {
    return Number(statSync(path, { bigint: true }).ino);
  } catch {
    return undefined;
  }
}

/** Our links, where they point (a link whose cgroup was removed is defunct: not listed). */
async function findAttachments(c: Ctx, st: State | undefined): Promise<Attachment[]> {
  const out: Attachment[] = [];
  for (const program of PROG_NAMES) {
    if (!present(linkPath(c, program))) continue;
    const li = await c.l.request<LinkInfo>('link', linkPath(c, program));
    if (!li.cgroupId) continue;
    const cgroup = st && cgroupIno(st.path) === li.cgroupId ? st.path : `cgroup id ${li.cgroupId}`;
    out.push({ cgroup, program, attachType: PROGRAMS[program], id: li.progId, link: li.id });
  }
  return out;
}

function walkCgroups(root: string, out: string[] = [], depth = 0): string[] {
  out.push(root);
  if (depth > 32) return out;
  let entries;
  try {
    entries = readdirSync(root, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) if (e.isDirectory()) walkCgroups(join(root, e.name), out, depth + 1);
  return out;
}

/**
 * Programs with our names attached to a cgroup without any bpf_link: an
 * older loader's attachments, or bpftool's. Nothing pins them, so they
 * would run until the cgroup goes away. Looked for in the given cgroups,
 * else in the whole tree, but only when such programs exist at all.
 * Needs CAP_SYS_ADMIN (program ids); without it, none are reported.
 */
async function findOrphans(c: Ctx, where?: string[]): Promise<Attachment[]> {
  if (!hasCap(effectiveCaps(), CAP_SYS_ADMIN)) return [];
  const named = (await c.l.request<ProgInfo[]>('named', 'toa_')).filter((p) => (PROG_NAMES as string[]).includes(p.name));
  const linked = new Set((await c.l.request<LinkInfo[]>('links')).map((li) => li.progId));
  const loose = new Map(named.filter((p) => !linked.has(p.id)).map((p) => [p.id, p.name as ProgName]));
  if (!loose.size) return [];
  const out: Attachment[] = [];
  for (const cgroup of where ?? walkCgroups(cgroup2Root())) {
    for (const program of PROG_NAMES) {
      let ids: number[];
      try {
        ids = await c.l.request<number[]>('query', cgroup, ATTACH_TYPE[program]);
      } catch {
        continue; // removed meanwhile
      }
      for (const id of ids) {
        const name = loose.get(id);
        if (name) out.push({ cgroup, program: name, attachType: PROGRAMS[name], id });
      }
    }
  }
  return out;
}

function fullyAttached(attachments: Attachment[], wanted: number): string[] {
  const per = new Map<string, number>();
  for (const a of attachments) per.set(a.cgroup, (per.get(a.cgroup) ?? 0) | (1 << PROG_NAMES.indexOf(a.program)));
  return [...per].filter(([, bits]) => wanted && (bits & wanted) === wanted).map(([cg]) => cg);
}

async function readConfig(c: Ctx): Promise<BpfConfig> {
  const cfg = await lookup(c, 'toa_config', u32le(0));
  if (!cfg) throw new BpfError('ERR_TOA_BPF_LOADER', 'toa_config has no entry');
  const decoded = decodeConfig([...cfg]);
  const keys = await c.l.request<string[]>('keys', mapPath(c, 'toa_trusted'));
  const ports = decoded.portsOnly ? decodePorts([...((await lookup(c, 'toa_ports', u32le(0))) ?? [])]) : [];
  return {
    ipv4Kinds: decoded.ipv4Kinds,
    ipv6Kinds: decoded.ipv6Kinds,
    trusted: keys.map((k) => cidrOfKey([...Buffer.from(k, 'hex')])),
    ports,
  };
}

async function readCounters(c: Ctx): Promise<Counters> {
  const counters = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as Counters;
  const info = await c.l.request<MapInfo>('mapinfo', mapPath(c, 'toa_stats'));
  for (let i = 0; i < Math.min(info.maxEntries, COUNTER_NAMES.length); i++) {
    const v = await lookup(c, 'toa_stats', u32le(i));
    let sum = 0n;
    for (let off = 0; v && off + 8 <= v.length; off += 8) sum += v.readBigUInt64LE(off);
    counters[COUNTER_NAMES[i]] = Number(sum);
  }
  return counters;
}

async function writeConfig(c: Ctx, want: BpfConfig): Promise<void> {
  const trie = mapPath(c, 'toa_trusted');
  const have = new Set(await c.l.request<string[]>('keys', trie));
  const wanted = new Set(want.trusted.map((t) => hexOf(cidrKey(t))));
  // Stale ranges out first, then the new ones: the trie never holds more
  // than the larger of the two lists (both bounded by its max_entries).
  // Dropping a range that is going anyway a moment early is the safe side.
  for (const k of have) if (!wanted.has(k)) await c.l.request('delete', trie, k);
  for (const k of wanted) if (!have.has(k)) await c.l.request('set', trie, k, '01');
  if (want.ports.length) await update(c, 'toa_ports', u32le(0), encodePorts(want.ports));
  await update(c, 'toa_config', u32le(0), encodeConfig(want));
}

function wantedConfig(o: Partial<BpfConfig>, base: BpfConfig): BpfConfig {
  return {
    ipv4Kinds: o.ipv4Kinds === undefined ? base.ipv4Kinds : parseKinds(o.ipv4Kinds, 'ipv4Kinds'),
    ipv6Kinds: o.ipv6Kinds === undefined ? base.ipv6Kinds : parseKinds(o.ipv6Kinds, 'ipv6Kinds'),
    trusted: o.trusted === undefined ? base.trusted : normalizeTrusted(o.trusted),
    ports: o.ports === undefined ? base.ports : parsePorts(o.ports),
  };
}

const DEFAULTS: BpfConfig = { ipv4Kinds: DEFAULT_IPV4_KINDS, ipv6Kinds: DEFAULT_IPV6_KINDS, trusted: [], ports: [] };

/**
 * Every source trusted where the whole machine is served: refused unless
 * asked for explicitly, and then said out loud.
 */
function checkTrust(cgroup: string, cfg: BpfConfig, trustAny: boolean | undefined, warn: (m: string) => void): void {
  if (cfg.trusted.length) return;
  const atRoot = cgroup === cgroup2Root();
  if (atRoot && !trustAny) {
    throw new BpfError('ERR_TOA_BPF_UNTRUSTED_ROOT',
      `attaching at the cgroup root (${cgroup}) serves every process on this host: give --trusted with your balancers' `
      + 'source CIDRs, or --trust-any if every client reaches this host only through them');
  }
  warn(`warning: every source is trusted on ${cgroup}: anyone who reaches ${atRoot ? 'this host' : 'these services'} `
    + 'directly can choose the client address they report (127.0.0.1 included); use --trusted CIDRs');
}

async function withLocked<T>(pinDir: string, fn: (c: Ctx) => Promise<T>, lock = true): Promise<T> {
  return withLoader(async (l) => {
    const c = { pinDir, l };
    if (lock) {
      try {
        await l.request('lock', dirname(pinDir), 30000);
      } catch (e) {
        wrap(e, 'ERR_TOA_BPF_LOADER', `lock ${dirname(pinDir)}`);
      }
    }
    return fn(c);
  });
}

function loaded(c: Ctx): boolean {
  return present(mapPath(c, 'toa_config')) && present(mapPath(c, 'toa_state'));
}

async function statusOf(c: Ctx, where?: string[]): Promise<BpfStatus> {
  const base: BpfStatus = { loaded: false, access: 'ok', pinDir: c.pinDir, kernel: release(), attachments: [], cgroups: [], orphans: [] };
  try {
    if (!loaded(c)) {
      base.attachments = await findAttachments(c, undefined);
      base.orphans = await findOrphans(c, where);
      return base;
    }
    const st = await readState(c);
    const attachments = await findAttachments(c, st);
    const orphans = await findOrphans(c, where ?? (st ? [st.path] : undefined));
    return {
      ...base,
      loaded: true,
      attachments,
      cgroups: fullyAttached(attachments, st?.attached ?? 0),
      orphans,
      object: st?.object,
      config: await readConfig(c),
      counters: await readCounters(c),
    };
  } catch (e) {
    if ((e as BpfError).code === 'ERR_TOA_BPF_PERMISSION_DENIED' || denied(e)) return { ...base, access: 'denied' };
    throw e;
  }
}

export async function status(o: BpfOptions & { cgroup?: string } = {}): Promise<BpfStatus> {
  const where = o.cgroup === undefined ? undefined : [resolveCgroup(o.cgroup)];
  return withLocked(pinDirOf(o), (c) => statusOf(c, where), false);
}

/** Changes kinds / trusted ranges / ports of the attached programs, for the next connection. */
export async function configure(o: ConfigureOptions, warn: (m: string) => void = () => {}): Promise<BpfConfig> {
  requireCaps('changing the eBPF backend');
  return withLocked(pinDirOf(o), async (c) => {
    if (!loaded(c)) throw new BpfError('ERR_TOA_BPF_NOT_LOADED', `nothing loaded under ${c.pinDir}: run attach first`);
    const want = wantedConfig(o, await readConfig(c));
    const st = await readState(c);
    if (st) checkTrust(st.path, want, o.trustAny, warn);
    await writeConfig(c, want);
    return want;
  });
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function btfNote(): string {
  return existsSync('/sys/kernel/btf/vmlinux')
    ? 'kernel BTF is present (/sys/kernel/btf/vmlinux)'
    : 'kernel BTF is missing (/sys/kernel/btf/vmlinux): this kernel was built without CONFIG_DEBUG_INFO_BTF, which the object needs';
}

/** Opens and loads the object against the pinned maps (created when absent). */
async function loadObject(c: Ctx, object: string): Promise<string> {
  mkdirSync(join(c.pinDir, 'maps'), { recursive: true });
  let h: string;
  try {
    h = String(await c.l.request<number>('open', object, join(c.pinDir, 'maps')));
  } catch (e) {
    wrap(e, 'ERR_TOA_BPF_LOADER', `cannot open ${object}`);
  }
  try {
    await c.l.request('load', h);
  } catch (e) {
    const err = e as LoaderError;
    // EACCES here is the verifier's refusal (an invalid access), not a right missing
    if (err.code === 'EPERM') {
      throw new BpfError('ERR_TOA_BPF_PERMISSION_DENIED', `permission denied: loading ${object}: ${err.message} (run as root; `
        + 'before 5.11 the kernel also charges BPF maps to RLIMIT_MEMLOCK: add CAP_SYS_RESOURCE, or LimitMEMLOCK=infinity)', err.log);
    }
    const log = err.log ?? '';
    const incompatible = /couldn't reuse pinned map/.test(log);
    throw new BpfError('ERR_TOA_BPF_LOAD', incompatible
      ? `the maps pinned under ${c.pinDir} do not fit ${object} (its map layout changed): detach, then attach (open connections lose their TOA)`
      : `the kernel refused the programs in ${object} (${err.code}; ${btfNote()}); libbpf and the verifier said:\n${verifierTail(log)}`,
    log);
  }
  return h;
}

/** Removes our pins, one by one; foreign files in the pin directory stay. */
function unpin(c: Ctx): string[] {
  const gone: string[] = [];
  const rm = (p: string) => {
    try {
      unlinkSync(p);
      gone.push(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  };
  // links first: the programs stop before their maps go
  for (const n of ['toa_sockops', ...ATTACH_ORDER.filter((x) => x !== 'toa_sockops')] as ProgName[]) rm(linkPath(c, n));
  for (const m of MAP_NAMES) rm(mapPath(c, m));
  // pins of the bpftool-based loader before this one
  for (const n of PROG_NAMES) rm(join(c.pinDir, 'progs', n));
  const leftover: string[] = [];
  for (const d of ['links', 'maps', 'progs', '']) {
    const dir = join(c.pinDir, d);
    try {
      rmdirSync(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // not ours alone (other tools' pins), or the bpffs mount point itself
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'EBUSY') leftover.push(dir);
      else if (code !== 'ENOENT') throw e;
    }
  }
  return gone;
}

async function detachOrphans(c: Ctx, orphans: Attachment[]): Promise<void> {
  const order = [...orphans].sort((a, b) => Number(b.program === 'toa_sockops') - Number(a.program === 'toa_sockops'));
  for (const a of order) {
    try {
      await c.l.request('detach', a.cgroup, ATTACH_TYPE[a.program], a.id);
    } catch (e) {
      if ((e as LoaderError).code !== 'ENOENT') wrap(e, 'ERR_TOA_BPF_LOADER', `detach orphan ${a.program} (id ${a.id}) from ${a.cgroup}`);
    }
  }
}

export interface AttachResult extends BpfStatus {
  /** what attach did: a first load, an upgrade to a new object, or only a config change */
  action: 'loaded' | 'upgraded' | 'configured';
  /** orphans (programs attached without links) it replaced */
  adopted: Attachment[];
}

/**
 * Loads, configures and attaches the programs to a cgroup. On programs
 * already attached there: applies the options given, and when the object
 * changed (an update of the package) swaps every link to the new programs
 * with bpf_link_update, keeping the pinned maps, so open connections keep
 * their address and new ones lose none.
 */
export async function attach(o: AttachOptions = {}, warn: (m: string) => void = () => {}): Promise<AttachResult> {
  requireCaps('attaching BPF programs');
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
  const pinDir = pinDirOf(o);
  ensureBpffs(pinDir);
  const wantProgs = o.getsockopt === false ? PROG_NAMES.filter((n) => n !== 'toa_getsockopt') : PROG_NAMES;
  const wantBits = wantProgs.reduce((b, n) => b | (1 << PROG_NAMES.indexOf(n)), 0);
  const hash = sha256(object);

  return withLocked(pinDir, async (c) => {
    if (present(join(pinDir, 'progs'))) {
      throw new BpfError('ERR_TOA_BPF_ALREADY_ATTACHED', `${pinDir} holds pins of the bpftool-based loader: run "node-toa bpf detach" first`);
    }
    const wasLoaded = loaded(c);
    const st = wasLoaded ? await readState(c) : undefined;
    const base = wasLoaded ? await readConfig(c) : DEFAULTS;
    const want = wantedConfig(o, base);
    checkTrust(cgroup, want, o.trustAny, warn);
    const have = wasLoaded ? await findAttachments(c, st) : [];
    const elsewhere = have.find((a) => a.cgroup !== cgroup);
    if (elsewhere) {
      throw new BpfError('ERR_TOA_BPF_ALREADY_ATTACHED',
        `already attached to ${elsewhere.cgroup} (pins in ${pinDir}): detach first, or use another pin directory`);
    }
    const orphans = await findOrphans(c, [cgroup]);
    const upgrade = wasLoaded && st !== undefined && st.object !== hash;
    const needLoad = !wasLoaded || upgrade || wantProgs.some((n) => !have.some((a) => a.program === n));
    let action: AttachResult['action'] = 'configured';
    let h: string | undefined;
    try {
      if (needLoad) h = await loadObject(c, object);
      await writeConfig(c, want);
      if (h !== undefined) {
        mkdirSync(join(pinDir, 'links'), { recursive: true });
        for (const name of ATTACH_ORDER) {
          const linked = have.some((a) => a.program === name);
          if (linked && upgrade) {
            await c.l.request('update', linkPath(c, name), h, name);
          } else if (!linked && wantProgs.includes(name)) {
            try {
              await c.l.request('attach', h, name, cgroup, linkPath(c, name));
            } catch (e) {
              wrap(e, 'ERR_TOA_BPF_LOADER', `cannot attach ${name} to ${cgroup}`);
            }
          }
        }
        action = wasLoaded ? (upgrade ? 'upgraded' : 'configured') : 'loaded';
      }
      // after ours are in place: no moment without TOA
      await detachOrphans(c, orphans);
      const attachedBits = (await findAttachments(c, { ino: cgroupIno(cgroup) ?? 0, attached: 0, path: cgroup, object: hash }))
        .reduce((b, a) => b | (1 << PROG_NAMES.indexOf(a.program)), 0);
      await writeState(c, { ino: cgroupIno(cgroup) ?? 0, attached: wasLoaded ? attachedBits | wantBits : wantBits, path: cgroup, object: hash });
    } catch (e) {
      // a first load that failed leaves nothing behind; an upgrade keeps what ran
      if (!wasLoaded) unpin(c);
      throw e;
    } finally {
      if (h !== undefined) await c.l.request('close', h).catch(() => undefined);
    }
    return { ...(await statusOf(c, [cgroup])), action, adopted: orphans };
  });
}

/**
 * Unpins our links (which detaches them) and maps, and removes orphans of
 * this backend attached without links; never touches other files in the
 * pin directory. Resolves false when there was nothing to remove.
 */
export async function detach(o: BpfOptions & { cgroup?: string } = {}): Promise<boolean> {
  requireCaps('detaching BPF programs');
  const pinDir = pinDirOf(o);
  if (!present(dirname(pinDir))) return false;
  return withLocked(pinDir, async (c) => {
    const st = loaded(c) ? await readState(c) : undefined;
    const mine = await findAttachments(c, st);
    const where = o.cgroup !== undefined ? [resolveCgroup(o.cgroup)] : st ? [st.path] : undefined;
    const orphans = await findOrphans(c, where);
    const gone = unpin(c);
    await detachOrphans(c, orphans);
    // bpffs drops an unlinked pin's object after an RCU grace period, and
    // a link detaches after its id is gone: return once the cgroup no
    // longer runs the programs
    const still = async (a: Attachment) => {
      try {
        return (await c.l.request<number[]>('query', a.cgroup, ATTACH_TYPE[a.program])).includes(a.id);
      } catch {
        return false; // the cgroup is gone, and its programs with it
      }
    };
    for (let i = 0; i < 250; i++) {
      const left = await Promise.all(mine.map(still));
      if (!left.includes(true)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    return gone.length > 0 || orphans.length > 0;
  });
}

// ---- command line ----

const USAGE = `usage: node-toa bpf <command> [options]

  attach   load the eBPF backend and attach it to a cgroup (v2); on programs
           already attached there, apply the options and upgrade to this
           package's object without losing a connection's address
           --cgroup PATH        cgroup directory, absolute or relative to the
                                cgroup2 mount (default: its root = whole machine)
           --trusted LIST       balancer/SNAT source CIDRs whose options count
                                (needed at the cgroup root, or --trust-any)
           --trust-any          honour options from every source (warns)
           --ports LIST         local ports where TOA is honoured (default all)
           --ipv4-kinds LIST    option kinds carrying an IPv4 client (default 200)
           --ipv6-kinds LIST    option kinds carrying an IPv6 client (default 253)
           --no-getsockopt      no getsockopt program: getpeername only, and
                                no effect at all on other programs' getsockopt
           --object FILE        compiled object (default bpf/dist/toa.bpf.o)
  set      change --trusted / --trust-any / --ports / --ipv4-kinds / --ipv6-kinds
  status   attachments, orphans, configuration and counters   [--json] [--cgroup PATH]
  detach   unpin our links and maps (detaching them), remove orphans [--cgroup PATH]
  install-service   write and enable a systemd unit that attaches at boot,
           before the network and the applications start: takes attach's
           options, plus --unit-dir DIR (default /etc/systemd/system), --no-enable

  common:  --pin-dir DIR (default ${DEFAULT_PIN_DIR})
Needs root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON), Linux >= 5.10 with BTF, cgroup v2.
Exit codes: 0 ok, 1 failed, 2 usage, 3 status: not attached, 4 permission denied.`;

const VALUE_FLAGS = new Set(['--cgroup', '--ipv4-kinds', '--ipv6-kinds', '--trusted', '--ports', '--object', '--pin-dir', '--unit-dir']);
const BOOL_FLAGS = new Set(['--json', '--help', '-h', '--trust-any', '--no-getsockopt', '--no-enable']);

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
  if (s.access === 'denied') return `permission denied: cannot read the pins under ${s.pinDir} (run as root)`;
  const orphanLines = s.orphans.map((a) => `orphan     ${a.cgroup} ${a.program} (program ${a.id}, attached without a link: "detach" removes it)`);
  if (!s.loaded && !s.attachments.length) return [`not attached (no pins under ${s.pinDir})`, ...orphanLines].join('\n');
  const lines = [`pins       ${s.pinDir}${s.loaded ? '' : ' (incomplete)'}`, `kernel     ${s.kernel}`];
  if (s.object) lines.push(`object     sha256 ${s.object}`);
  if (s.cgroups.length) lines.push(...s.cgroups.map((cg) => `attached   ${cg}`));
  const partial = s.attachments.filter((a) => !s.cgroups.includes(a.cgroup));
  lines.push(...partial.map((a) => `partial    ${a.cgroup} ${a.program}`));
  if (!s.attachments.length) lines.push('attached   nowhere');
  lines.push(...orphanLines);
  if (s.config) {
    lines.push(`ipv4-kinds ${s.config.ipv4Kinds.join(',')}`, `ipv6-kinds ${s.config.ipv6Kinds.join(',')}`,
      `trusted    ${s.config.trusted.length ? s.config.trusted.join(',') : '(every source)'}`,
      `ports      ${s.config.ports.length ? s.config.ports.join(',') : '(every port)'}`);
  }
  if (s.counters) {
    lines.push('counters');
    for (const [k, v] of Object.entries(s.counters)) lines.push(`  ${k.padEnd(22)} ${v}`);
  }
  return lines.join('\n');
}

function configFlags(flags: Map<string, string | true>): Partial<BpfConfig> & { trustAny?: boolean } {
  const out: Partial<BpfConfig> & { trustAny?: boolean } = {};
  const v4 = str(flags, '--ipv4-kinds');
  const v6 = str(flags, '--ipv6-kinds');
  const tr = str(flags, '--trusted');
  const ports = str(flags, '--ports');
  if (v4 !== undefined) out.ipv4Kinds = parseKinds(v4, '--ipv4-kinds');
  if (v6 !== undefined) out.ipv6Kinds = parseKinds(v6, '--ipv6-kinds');
  if (tr !== undefined) out.trusted = normalizeTrusted(tr);
  if (ports !== undefined) out.ports = parsePorts(ports, '--ports');
  if (flags.has('--trust-any')) {
    if (out.trusted?.length) throw new BpfError('ERR_INVALID_ARG_VALUE', '--trust-any and --trusted exclude each other');
    out.trustAny = true;
    out.trusted = [];
  }
  return out;
}

const warnStderr = (m: string) => { process.stderr.write(`node-toa bpf: ${m}\n`); };

/**
 * `node-toa bpf ...`: argv without the leading "bpf". Resolves the exit
 * code: 0 done, 1 failed (message on stderr), 2 usage error, 3 status: not
 * attached, 4 permission denied.
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
  const common: BpfOptions = { pinDir: str(flags, '--pin-dir') };
  const print = (s: BpfStatus) => process.stdout.write(flags.has('--json') ? `${JSON.stringify(s, null, 2)}\n` : `${formatStatus(s)}\n`);
  try {
    switch (cmd) {
      case 'attach': {
        const s = await attach({
          ...common, ...configFlags(flags), cgroup: str(flags, '--cgroup'), object: str(flags, '--object'),
          getsockopt: !flags.has('--no-getsockopt'),
        }, warnStderr);
        for (const a of s.adopted) warnStderr(`replaced orphan ${a.program} (program ${a.id}) on ${a.cgroup}`);
        print(s);
        return 0;
      }
      case 'set': {
        const cfg = configFlags(flags);
        if (!Object.keys(cfg).length) throw new BpfError('ERR_INVALID_ARG_VALUE', 'set: give --trusted, --trust-any, --ports, --ipv4-kinds or --ipv6-kinds');
        await configure({ ...common, ...cfg }, warnStderr);
        print(await status(common));
        return 0;
      }
      case 'status': {
        const s = await status({ ...common, cgroup: str(flags, '--cgroup') });
        print(s);
        if (s.access === 'denied') return 4;
        return s.cgroups.length ? 0 : 3;
      }
      case 'detach': {
        const was = await detach({ ...common, cgroup: str(flags, '--cgroup') });
        process.stdout.write(was ? 'detached\n' : 'not attached\n');
        return 0;
      }
      case 'install-service': {
        const { installService } = await import('./service');
        // attach's own options go into ExecStart; install-service's do not
        const pass = [...flags].filter(([k]) => !['--unit-dir', '--no-enable', '--json'].includes(k))
          .flatMap(([k, v]) => (v === true ? [k] : [k, v]));
        const r = installService({
          argv: pass,
          unitDir: str(flags, '--unit-dir'),
          enable: !flags.has('--no-enable'),
          check: () => checkTrust(resolveCgroup(str(flags, '--cgroup')), wantedConfig(configFlags(flags), DEFAULTS),
            flags.has('--trust-any'), warnStderr),
        });
        process.stdout.write(`${r.message}\n`);
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
    if (err.code === 'ERR_TOA_BPF_PERMISSION_DENIED') return 4;
    return err.code === 'ERR_INVALID_ARG_VALUE' ? 2 : 1;
  }
}
