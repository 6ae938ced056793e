// Reference TCP option walker and a deterministic generator of hostile option
// lists. The walker states the rules every backend must follow (kernel
// tcp_parse_options rules): EOL ends, NOP is skipped, len < 2 or
// len > remaining stops the walk, kind and length must both match, first
// match wins; in a SYN, a kind-254 option whose two bytes after the length
// are the TFO ExID 0xF989 is a Fast Open cookie, never an address.

export interface Kinds {
  v4: number[];
  v6: number[];
}

export type Parsed =
  | { result: 'found'; kind: number; family: 4 | 6; address: string; port: number; bogus?: true }
  | { result: 'none' }
  | { result: 'malformed' };

function v6String(b: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i] << 8) | b[i + 1]).toString(16));
  // canonical compression of the longest zero run (RFC 5952), as inet_ntop
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/**
 * An address no client can have, which no backend adopts (the connection
 * then looks like one without TOA): unspecified, loopback, multicast,
 * limited broadcast, and v4-mapped unspecified / loopback.
 */
export function bogusAddress(a: Uint8Array): boolean {
  if (a.length === 4) return a.every((b) => b === 0) || a[0] === 127 || (a[0] & 0xf0) === 0xe0 || a.every((b) => b === 255);
  if (a[0] === 0xff) return true;
  const zeros10 = a.subarray(0, 10).every((b) => b === 0);
  if (zeros10 && a[10] === 0 && a[11] === 0) return a.subarray(12, 15).every((b) => b === 0) && a[15] <= 1;
  if (zeros10 && a[10] === 0xff && a[11] === 0xff) return a[12] === 127 || a.subarray(12).every((b) => b === 0);
  return false;
}

/** `syn`: the options are a SYN's (kind 254 / 0xF989 is then a TFO cookie). */
export function parseOptions(opt: Uint8Array, kinds: Kinds, syn = false): Parsed {
  let i = 0;
  while (i < opt.length) {
    const kind = opt[i];
    if (kind === 0) return { result: 'none' };
    if (kind === 1) { i++; continue; }
    if (opt.length - i < 2) return { result: 'malformed' };
    const len = opt[i + 1];
    if (len < 2 || len > opt.length - i) return { result: 'malformed' };
    // a TFO cookie only in a SYN (tcp_parse_options); elsewhere 0xF989 is port 63881
    if (syn && kind === 254 && len >= 4 && opt[i + 2] === 0xf9 && opt[i + 3] === 0x89) { i += len; continue; }
    if (len === 8 && kinds.v4.includes(kind)) {
      return {
        result: 'found', kind, family: 4,
        port: (opt[i + 2] << 8) | opt[i + 3],
        address: Array.from(opt.subarray(i + 4, i + 8)).join('.'),
        ...(bogusAddress(opt.subarray(i + 4, i + 8)) ? { bogus: true as const } : {}),
      };
    }
    if (len === 20 && kinds.v6.includes(kind)) {
      return {
        result: 'found', kind, family: 6,
        port: (opt[i + 2] << 8) | opt[i + 3],
        address: v6String(opt.subarray(i + 4, i + 20)),
        ...(bogusAddress(opt.subarray(i + 4, i + 20)) ? { bogus: true as const } : {}),
      };
    }
    i += len;
  }
  return { result: 'none' };
}

/**
 * Whether a 6.7+ kernel may drop a segment carrying these options before any
 * TOA backend sees it: tcp_inbound_hash() walks the options looking for
 * TCP-MD5 (kind 19) / TCP-AO (kind 29) and drops the segment when it finds
 * one without a configured key or meets a bad length
 * (SKB_DROP_REASON_TCP_AUTH_HDR / _MD5UNEXPECTED), even after a well-formed
 * TOA. Its walk stops early near the end of the list, so "may".
 */
export function authWalkMayDrop(opt: Uint8Array): boolean {
  let i = 0;
  while (i < opt.length) {
    const kind = opt[i];
    if (kind === 0) return false;
    if (kind === 1) { i++; continue; }
    if (kind === 19 || kind === 29) return true;
    if (opt.length - i < 2) return true;
    const len = opt[i + 1];
    if (len < 2 || len > opt.length - i) return true;
    i += len;
  }
  return false;
}

/** Kernels whose tcp_inbound_hash() may drop such segments (see authWalkMayDrop). */
export function kernelDropsBadOptionLengths(release: string): boolean {
  const [maj, min] = release.split(/[.-]/).map(Number);
  return maj > 6 || (maj === 6 && min >= 7);
}

/** Small deterministic PRNG (mulberry32) so a failing case can be replayed by seed. */
export function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)],
  };
}

/** Fuzz addresses come from documentation ranges only. */
const FUZZ_V4 = [198, 51, 100];
const FUZZ_V6 = [0x20, 0x01, 0x0d, 0xb8, 0xf0, 0x22];

/**
 * One hostile option list (<= 40 bytes, padded with EOL to a multiple of 4).
 * Mixes: random bytes, TOA kinds with wrong/short/overlong lengths, zero and
 * one lengths, truncated options at the end, valid TOAs hidden behind
 * malformed elements, TFO cookies under kind 254, NOP runs, early EOL.
 */
export function hostileOptions(r: ReturnType<typeof rng>, kinds: Kinds): Buffer {
  const parts: number[] = [];
  const toaKinds = [...kinds.v4, ...kinds.v6, 254, 253, 200];
  const addrV4 = () => [...FUZZ_V4, 1 + r.int(254)];
  const addrV6 = () => [...FUZZ_V6, ...Array.from({ length: 10 }, () => r.int(256))];
  const pieces = 1 + r.int(5);
  for (let p = 0; p < pieces && parts.length < 40; p++) {
    switch (r.int(12)) {
      case 0: // random bytes
        for (let n = 1 + r.int(10); n > 0; n--) parts.push(r.int(256));
        break;
      case 1: // TOA kind, wrong length, body of that length if it fits
      {
        const k = r.pick(toaKinds);
        const len = r.pick([0, 1, 2, 3, 4, 6, 7, 9, 10, 19, 21, 39, 40, 41, 255]);
        parts.push(k, len);
        for (let n = Math.max(0, Math.min(len - 2, 10)); n > 0; n--) parts.push(r.int(256));
        break;
      }
      case 2: // valid IPv4 TOA
        parts.push(r.pick(kinds.v4.length ? kinds.v4 : [200]), 8, r.int(256), r.int(256), ...addrV4());
        break;
      case 3: // valid IPv6 TOA
        parts.push(r.pick(kinds.v6.length ? kinds.v6 : [253]), 20, r.int(256), r.int(256), ...addrV6());
        break;
      case 4: // truncated TOA at the end of the list
        parts.push(r.pick(toaKinds), r.pick([8, 20]), ...addrV4().slice(0, r.int(4)));
        p = pieces;
        break;
      case 5: // TFO experimental cookie (kind 254 / ExID 0xF989)
        parts.push(254, 8, 0xf9, 0x89, r.int(256), r.int(256), r.int(256), r.int(256));
        break;
      case 6: // NOPs
        for (let n = 1 + r.int(4); n > 0; n--) parts.push(1);
        break;
      case 7: // early EOL then a valid-looking TOA after it (must be ignored)
        parts.push(0, r.pick(kinds.v4.length ? kinds.v4 : [200]), 8, 0, 80, ...addrV4());
        break;
      case 8: // len 0 / len 1 trap (infinite loop bait)
        parts.push(r.int(256) | 2, r.int(2));
        break;
      case 9: // a known kernel option (MSS, SACK_PERM, timestamp) well formed
        parts.push(...r.pick([[2, 4, 5, 0xb4], [4, 2], [8, 10, 1, 2, 3, 4, 5, 6, 7, 8], [3, 3, 7]]));
        break;
      case 10: // length pointing past the end
        parts.push(r.int(256) | 2, 41 + r.int(200));
        break;
      default: // random kind, random plausible length, random body
      {
        const len = 2 + r.int(12);
        parts.push(r.int(256), len);
        for (let n = len - 2; n > 0; n--) parts.push(r.int(256));
      }
    }
  }
  const bytes = parts.slice(0, 40);
  while (bytes.length % 4) bytes.push(0);
  return Buffer.from(bytes);
}
