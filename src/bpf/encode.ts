// Byte layouts of the maps in bpf/toa_bpf.h, and the parsing of what users
// type (kinds, CIDRs). Keep in step with that header.
import { isIPv4, isIPv6 } from 'node:net';
import { BpfError } from './errors';

export const DEFAULT_IPV4_KINDS = [200];
export const DEFAULT_IPV6_KINDS = [253];

/** toa_stats indices, named as in the kernel module's /proc/net/toa_stats */
export const COUNTER_NAMES = [
  'syn_recv_sock_toa',
  'syn_recv_sock_no_toa',
  'getname_toa_ok',
  'getname_toa_mismatch',
  'getname_toa_empty',
  'untrusted',
  'malformed',
  'bogus_unspecified',
  'bogus_loopback',
  'bogus_multicast',
  'bogus_broadcast',
] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];
export type Counters = Record<CounterName, number>;

export interface BpfConfig {
  ipv4Kinds: number[];
  ipv6Kinds: number[];
  /** balancer / SNAT source ranges whose options are honoured; empty = all */
  trusted: string[];
  /** local ports where TOA is honoured; empty = all */
  ports: number[];
}

/** toa_trusted's max_entries (TOA_BPF_MAX_TRUSTED) */
export const MAX_TRUSTED = 1024;
const PORTS_SIZE = 65536 / 8; // struct toa_bpf_ports

const CONFIG_SIZE = 72; // struct toa_bpf_config
const CIDR_KEY_SIZE = 20; // struct toa_bpf_cidr

export function parseKinds(value: unknown, name: string): number[] {
  const list = typeof value === 'string' ? value.split(',').map((s) => s.trim()).filter(Boolean) : value;
  if (!Array.isArray(list)) throw new BpfError('ERR_INVALID_ARG_VALUE', `${name}: expected a list of option kinds`);
  const kinds = list.map((k) => (typeof k === 'string' && /^\d+$/.test(k) ? Number(k) : k));
  for (const k of kinds) {
    // 0 and 1 are EOL and NOP: they never start an option that has a length
    if (!Number.isInteger(k) || (k as number) < 2 || (k as number) > 255) {
      throw new BpfError('ERR_INVALID_ARG_VALUE', `${name}: ${String(k)} is not a TCP option kind (2..255)`);
    }
  }
  return [...new Set(kinds as number[])].sort((a, b) => a - b);
}

function kindBitmap(kinds: number[]): number[] {
  const bytes = new Array<number>(32).fill(0);
  for (const k of kinds) bytes[k >> 3] |= 1 << (k & 7);
  return bytes;
}

function kindsOf(bitmap: number[]): number[] {
  const kinds: number[] = [];
  bitmap.forEach((b, i) => {
    for (let bit = 0; bit < 8; bit++) if (b & (1 << bit)) kinds.push(i * 8 + bit);
  });
  return kinds;
}

export function parsePorts(value: unknown, name = 'ports'): number[] {
  const list = typeof value === 'string' ? value.split(',').map((s) => s.trim()).filter(Boolean) : value;
  if (!Array.isArray(list)) throw new BpfError('ERR_INVALID_ARG_VALUE', `${name}: expected a list of ports`);
  const ports = list.map((p) => (typeof p === 'string' && /^\d+$/.test(p) ? Number(p) : p));
  for (const p of ports) {
    if (!Number.isInteger(p) || (p as number) < 1 || (p as number) > 65535) {
      throw new BpfError('ERR_INVALID_ARG_VALUE', `${name}: ${String(p)} is not a port (1..65535)`);
    }
  }
  return [...new Set(ports as number[])].sort((a, b) => a - b);
}

export function encodePorts(ports: number[]): number[] {
  const bytes = new Array<number>(PORTS_SIZE).fill(0);
  for (const p of ports) bytes[p >> 3] |= 1 << (p & 7);
  return bytes;
}

export function decodePorts(bytes: number[]): number[] {
  return kindsOf(bytes);
}

export function encodeConfig(c: BpfConfig): number[] {
  const out = [...kindBitmap(c.ipv4Kinds), ...kindBitmap(c.ipv6Kinds), 1, c.trusted.length ? 1 : 0, c.ports.length ? 1 : 0];
  while (out.length < CONFIG_SIZE) out.push(0);
  return out;
}

export function decodeConfig(bytes: number[]): Omit<BpfConfig, 'trusted' | 'ports'> & { configured: boolean; trustedOnly: boolean; portsOnly: boolean } {
  if (bytes.length !== CONFIG_SIZE) {
    throw new BpfError('ERR_TOA_BPF_LOADER', `toa_config value has ${bytes.length} bytes, expected ${CONFIG_SIZE}: object and loader disagree`);
  }
  const configured = bytes[64] !== 0;
  return {
    configured,
    trustedOnly: bytes[65] !== 0,
    portsOnly: bytes[66] !== 0,
    ipv4Kinds: configured ? kindsOf(bytes.slice(0, 32)) : DEFAULT_IPV4_KINDS,
    ipv6Kinds: configured ? kindsOf(bytes.slice(32, 64)) : DEFAULT_IPV6_KINDS,
  };
}

function ipv4Bytes(s: string): number[] {
  return s.split('.').map(Number);
}

function ipv6Bytes(s: string): number[] {
  let text = s;
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    tail = ipv4Bytes(text.slice(lastColon + 1));
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [head, rest] = text.split('::');
  const groups = (part: string | undefined) => (part ? part.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const r = groups(rest);
  const words = rest === undefined ? h : [...h, ...new Array<number>(8 - h.length - r.length).fill(0), ...r];
  const bytes = words.flatMap((w) => [w >> 8, w & 0xff]);
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes;
}

/**
 * A trusted range as the trie key: prefixlen (host order, 4 bytes) then 16
 * address bytes; IPv4 ranges become ::ffff:a.b.c.d/(96 + len), which is how
 * the program looks up an IPv4 balancer.
 */
export function cidrKey(cidr: string): number[] {
  const [addr, len, extra] = cidr.trim().split('/');
  const v4 = isIPv4(addr);
  if (extra !== undefined || (!v4 && !isIPv6(addr))) {
    throw new BpfError('ERR_INVALID_ARG_VALUE', `trusted: "${cidr}" is not an address or CIDR`);
  }
  const max = v4 ? 32 : 128;
  if (len !== undefined && !/^\d+$/.test(len)) throw new BpfError('ERR_INVALID_ARG_VALUE', `trusted: bad prefix length in "${cidr}"`);
  const plen = len === undefined ? max : Number(len);
  if (plen > max) throw new BpfError('ERR_INVALID_ARG_VALUE', `trusted: prefix /${plen} too long in "${cidr}"`);
  const addrBytes = v4 ? [...new Array<number>(10).fill(0), 0xff, 0xff, ...ipv4Bytes(addr)] : ipv6Bytes(addr);
  const bits = v4 ? 96 + plen : plen;
  // host bits cleared, so that "203.0.113.9/24" and "203.0.113.0/24" are one key
  const masked = addrBytes.map((b, i) => {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    return b & ((0xff00 >> keep) & 0xff);
  });
  return [bits & 0xff, (bits >> 8) & 0xff, 0, 0, ...masked];
}

export function cidrOfKey(key: number[]): string {
  if (key.length !== CIDR_KEY_SIZE) throw new BpfError('ERR_TOA_BPF_LOADER', `trusted key of ${key.length} bytes`);
  const bits = key[0] | (key[1] << 8);
  const a = key.slice(4);
  const mapped = a.slice(0, 10).every((b) => b === 0) && a[10] === 0xff && a[11] === 0xff && bits >= 96;
  if (mapped) return `${a.slice(12).join('.')}/${bits - 96}`;
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((a[i] << 8) | a[i + 1]).toString(16));
  // compress the longest run of zero words, as inet_ntop does
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === '0') j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const text = best < 0 ? words.join(':') : `${words.slice(0, best).join(':')}::${words.slice(best + bestLen).join(':')}`;
  return `${text}/${bits}`;
}

export function normalizeTrusted(value: unknown): string[] {
  const list = typeof value === 'string' ? value.split(/[\s,]+/).filter(Boolean) : value;
  if (!Array.isArray(list) || list.some((c) => typeof c !== 'string')) {
    throw new BpfError('ERR_INVALID_ARG_VALUE', 'trusted: expected a list of CIDR strings');
  }
  const keys = new Map<string, string>();
  for (const c of list as string[]) {
    const k = cidrKey(c);
    keys.set(k.join(','), cidrOfKey(k));
  }
  // the loader swaps lists stale-first, so the trie never holds more than this
  if (keys.size > MAX_TRUSTED) {
    throw new BpfError('ERR_INVALID_ARG_VALUE', `trusted: ${keys.size} ranges, at most ${MAX_TRUSTED}`);
  }
  return [...keys.values()];
}

export function u32le(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}
