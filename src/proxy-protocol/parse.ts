// The PROXY protocol v1/v2 header parser (haproxy's doc/proxy-protocol.txt).
// Pure and incremental: given the bytes received so far it answers "need
// more", "here is the header and its length" or "refuse, because...". It
// never reads past the bytes it is given and never throws on any input.
import type { AddressFamily, PeerAddress } from '../lookup';
import { formatIPv4, formatIPv6, isIPv4, parseIPv6 } from './address';
import { crc32c } from './crc32c';
import type { ProxySslInfo, ProxyTlv, ProxyTlvs } from './types';

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** v1: the longest line the spec allows, CRLF included. */
export const V1_MAX_BYTES = 107;
/** v2: 16 fixed bytes and a 16-bit length. */
export const V2_MAX_BYTES = 16 + 0xffff;

/**
 * Why a header was refused:
 * - `not-proxy`: the bytes start like neither signature;
 * - `malformed`: v1 syntax, a v2 version/command/family the spec does not define;
 * - `oversized`: longer than the limit (v1: 107 bytes; v2: `maxHeaderBytes`);
 * - `bad-length`: v2 length shorter than its own address block;
 * - `bad-tlv`: v2 TLVs that overrun the header, or a known TLV with an impossible value;
 * - `checksum`: a PP2_TYPE_CRC32C that does not match.
 */
export type ProxyRefusal = 'not-proxy' | 'malformed' | 'oversized' | 'bad-length' | 'bad-tlv' | 'checksum';

export interface ProxyHeader {
  readonly version: 1 | 2;
  /** LOCAL: v2 LOCAL, v1 UNKNOWN, or a v2 PROXY without usable addresses: the connection's own endpoints apply. */
  readonly command: 'PROXY' | 'LOCAL';
  /** 'TCP4' / 'TCP6' / 'UNKNOWN' (v1); 'TCP4' / 'TCP6' / 'UNSPEC' / 'UNIX' (v2). */
  readonly protocol: 'TCP4' | 'TCP6' | 'UNKNOWN' | 'UNSPEC' | 'UNIX';
  readonly source?: PeerAddress;
  readonly destination?: PeerAddress;
  /** v2 only. */
  readonly tlvs?: ProxyTlvs;
}

export type ParseResult =
  | { readonly status: 'incomplete' }
  | { readonly status: 'ok'; readonly header: ProxyHeader; readonly length: number }
  | { readonly status: 'error'; readonly reason: ProxyRefusal; readonly message: string };

const INCOMPLETE = Object.freeze({ status: 'incomplete' as const });
const refuse = (reason: ProxyRefusal, message: string): ParseResult => ({ status: 'error', reason, message });

/**
 * Parses the header at the start of `bytes`. `maxHeaderBytes` bounds v2
 * headers (v1 lines are bounded by the spec's 107 bytes, or the limit if lower).
 */
export function parseProxyHeader(bytes: Uint8Array, maxHeaderBytes = V2_MAX_BYTES): ParseResult {
  if (bytes.length === 0) return INCOMPLETE;
  if (bytes[0] === V2_SIGNATURE[0]) return parseV2(bytes, maxHeaderBytes);
  if (bytes[0] === V1_PREFIX[0]) return parseV1(bytes, Math.min(maxHeaderBytes, V1_MAX_BYTES));
  return refuse('not-proxy', 'the connection does not start with a PROXY protocol signature');
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  const n = Math.min(bytes.length, prefix.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

// ---------------------------------------------------------------- v1 ----

const PORT = /^(?:0|[1-9]\d{0,4})$/;
const NOT_PRINTABLE = /[^\x20-\x7e]/;

function latin1(bytes: Uint8Array, n: number): string {
  return (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)).toString('latin1', 0, n);
}

function parseV1(bytes: Uint8Array, max: number): ParseResult {
  if (!startsWith(bytes, V1_PREFIX)) {
    return refuse('not-proxy', 'the connection does not start with a PROXY protocol signature');
  }
  // String search and a regex rather than a loop over bytes: both are native.
  const n = Math.min(bytes.length, max);
  const text = latin1(bytes, n);
  const end = text.indexOf('\r', V1_PREFIX.length);
  const bad = NOT_PRINTABLE.exec(text.substring(V1_PREFIX.length, end < 0 ? n : end));
  if (bad) return refuse('malformed', `v1: byte 0x${bad[0].charCodeAt(0).toString(16).padStart(2, '0')} in the line`);
  if (end < 0 || end + 1 >= n) {
    return n >= max ? refuse('oversized', `v1: no CRLF within ${max} bytes`) : INCOMPLETE;
  }
  if (text.charCodeAt(end + 1) !== 0x0a) return refuse('malformed', 'v1: CR not followed by LF');
  const line = text.substring(0, end);
  const parts = line.split(' ');
  const length = end + 2;
  if (parts[1] === 'UNKNOWN') {
    // The spec: the receiver must ignore anything after UNKNOWN up to the CRLF.
    return { status: 'ok', length, header: Object.freeze({ version: 1, command: 'LOCAL', protocol: 'UNKNOWN' }) };
  }
  if (parts[1] !== 'TCP4' && parts[1] !== 'TCP6') return refuse('malformed', 'v1: protocol is not TCP4, TCP6 or UNKNOWN');
  if (parts.length !== 6) return refuse('malformed', `v1: ${parts.length - 2} fields after the protocol, expected 4 separated by single spaces`);
  const v4 = parts[1] === 'TCP4';
  const family: AddressFamily = v4 ? 'IPv4' : 'IPv6';
  const addr = (text: string): string | undefined => {
    if (v4) return isIPv4(text) ? text : undefined;
    const b = parseIPv6(text);
    return b && formatIPv6(b);
  };
  const src = addr(parts[2]);
  const dst = addr(parts[3]);
  if (src === undefined || dst === undefined) return refuse('malformed', `v1: address is not a canonical ${family} address`);
  if (!PORT.test(parts[4]) || !PORT.test(parts[5]) || +parts[4] > 0xffff || +parts[5] > 0xffff) {
    return refuse('malformed', 'v1: port is not a decimal 0-65535 without leading zeros');
  }
  return {
    status: 'ok',
    length,
    header: Object.freeze({
      version: 1,
      command: 'PROXY',
      protocol: parts[1],
      source: Object.freeze({ address: src, port: +parts[4], family }),
      destination: Object.freeze({ address: dst, port: +parts[5], family }),
    }),
  };
}

// ---------------------------------------------------------------- v2 ----

function parseV2(bytes: Uint8Array, max: number): ParseResult {
  if (!startsWith(bytes, V2_SIGNATURE)) {
    return refuse('not-proxy', 'the connection does not start with a PROXY protocol signature');
  }
  if (bytes.length > 12) {
    const verCmd = bytes[12];
    if (verCmd >> 4 !== 2) return refuse('malformed', `v2: version ${verCmd >> 4}, only 2 is defined`);
    if ((verCmd & 0xf) > 1) return refuse('malformed', `v2: command ${verCmd & 0xf}, only LOCAL (0) and PROXY (1) are defined`);
  }
  if (bytes.length > 13) {
    const fam = bytes[13];
    if (fam >> 4 > 3 || (fam & 0xf) > 2) return refuse('malformed', `v2: family/protocol byte 0x${fam.toString(16)} is not defined`);
  }
  if (bytes.length < 16) return INCOMPLETE;
  const length = 16 + ((bytes[14] << 8) | bytes[15]);
  if (length > max) return refuse('oversized', `v2: header of ${length} bytes, over the ${max}-byte limit`);
  if (bytes.length < length) return INCOMPLETE;

  if ((bytes[12] & 0xf) === 0) {
    // LOCAL: the spec says to discard the whole block, family included.
    return { status: 'ok', length, header: Object.freeze({ version: 2, command: 'LOCAL', protocol: 'UNSPEC' }) };
  }
  const af = bytes[13] >> 4;
  const transport = bytes[13] & 0xf;
  const addrLen = af === 1 ? 12 : af === 2 ? 36 : af === 3 ? 216 : 0;
  if (length - 16 < addrLen) return refuse('bad-length', `v2: length ${length - 16} is shorter than the ${addrLen}-byte address block`);
  if (transport === 2) return refuse('malformed', 'v2: a DGRAM (UDP) header on a stream connection');
  const tlvs = parseTlvs(bytes, 16 + addrLen, length);
  if (typeof tlvs === 'string') return refuse('bad-tlv', `v2: ${tlvs}`);
  if (tlvs.crc32c !== undefined && !checksumMatches(bytes, length)) {
    return refuse('checksum', 'v2: PP2_TYPE_CRC32C does not match the header');
  }
  if ((af !== 1 && af !== 2) || transport !== 1) {
    // UNSPEC or UNIX: the spec lets the receiver use the real endpoints.
    return { status: 'ok', length, header: Object.freeze({ version: 2, command: 'LOCAL', protocol: af === 3 ? 'UNIX' : 'UNSPEC', tlvs }) };
  }
  const v4 = af === 1;
  const family: AddressFamily = v4 ? 'IPv4' : 'IPv6';
  const size = v4 ? 4 : 16;
  const fmt = v4 ? formatIPv4 : formatIPv6;
  const ports = 16 + 2 * size;
  return {
    status: 'ok',
    length,
    header: Object.freeze({
      version: 2,
      command: 'PROXY',
      protocol: v4 ? 'TCP4' : 'TCP6',
      source: Object.freeze({ address: fmt(bytes, 16), port: (bytes[ports] << 8) | bytes[ports + 1], family }),
      destination: Object.freeze({ address: fmt(bytes, 16 + size), port: (bytes[ports + 2] << 8) | bytes[ports + 3], family }),
      tlvs,
    }),
  };
}

// TLV types (haproxy doc/proxy-protocol.txt 2.2; cloud vendors' own docs for 0xE0, 0xEA, 0xEE).
const PP2_TYPE_ALPN = 0x01;
const PP2_TYPE_AUTHORITY = 0x02;
const PP2_TYPE_CRC32C = 0x03;
const PP2_TYPE_UNIQUE_ID = 0x05;
const PP2_TYPE_SSL = 0x20;
const PP2_SUBTYPE_SSL_VERSION = 0x21;
const PP2_SUBTYPE_SSL_CN = 0x22;
const PP2_SUBTYPE_SSL_CIPHER = 0x23;
const PP2_SUBTYPE_SSL_SIG_ALG = 0x24;
const PP2_SUBTYPE_SSL_KEY_ALG = 0x25;
const PP2_TYPE_NETNS = 0x30;
const PP2_TYPE_GCP = 0xe0;
const PP2_TYPE_AWS = 0xea;
const PP2_SUBTYPE_AWS_VPCE_ID = 0x01;
const PP2_TYPE_AZURE = 0xee;
const PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID = 0x01;

const EMPTY_TLVS: ProxyTlvs = Object.freeze({ raw: Object.freeze([]) });

/** Splits [from, to) into TLVs (values are views into `bytes`); a string says why they are invalid. */
function splitTlvs(bytes: Buffer, from: number, to: number): ProxyTlv[] | string {
  const out: ProxyTlv[] = [];
  for (let at = from; at < to;) {
    if (to - at < 3) return `${to - at} bytes left where a TLV needs at least 3`;
    const len = (bytes[at + 1] << 8) | bytes[at + 2];
    if (at + 3 + len > to) return `TLV 0x${bytes[at].toString(16)} of ${len} bytes overruns the header by ${at + 3 + len - to}`;
    out.push(Object.freeze({ type: bytes[at], value: bytes.subarray(at + 3, at + 3 + len) }));
    at += 3 + len;
  }
  return out;
}

function parseTlvs(bytes: Uint8Array, from: number, to: number): ProxyTlvs | string {
  if (from === to) return EMPTY_TLVS;
  // One copy for all TLVs: the header's buffer is the connection's first
  // read, which must not be kept alive by a small TLV.
  const raw = splitTlvs(Buffer.from(bytes.subarray(from, to)), 0, to - from);
  if (typeof raw === 'string') return raw;
  const t: { -readonly [K in keyof ProxyTlvs]: ProxyTlvs[K] } = { raw: Object.freeze(raw) };
  for (const { type, value } of raw) {
    switch (type) {
      case PP2_TYPE_ALPN: t.alpn = value.toString('latin1'); break;
      case PP2_TYPE_AUTHORITY: t.authority = value.toString('utf8'); break;
      case PP2_TYPE_CRC32C:
        if (value.length !== 4) return `PP2_TYPE_CRC32C of ${value.length} bytes, expected 4`;
        t.crc32c = value.readUInt32BE(0);
        break;
      case PP2_TYPE_UNIQUE_ID:
        if (value.length > 128) return `PP2_TYPE_UNIQUE_ID of ${value.length} bytes, at most 128`;
        t.uniqueId = value;
        break;
      case PP2_TYPE_SSL: {
        const ssl = parseSsl(value);
        if (typeof ssl === 'string') return ssl;
        t.ssl = ssl;
        break;
      }
      case PP2_TYPE_NETNS: t.netns = value.toString('latin1'); break;
      case PP2_TYPE_GCP:
        if (value.length !== 8) return `GCP PSC connection ID of ${value.length} bytes, expected 8`;
        t.gcpPscConnectionId = value.readBigUInt64BE(0).toString();
        break;
      case PP2_TYPE_AWS:
        if (value.length < 1) return 'AWS TLV without a subtype';
        if (value[0] === PP2_SUBTYPE_AWS_VPCE_ID) t.awsVpceId = value.toString('latin1', 1);
        break;
      case PP2_TYPE_AZURE:
        if (value.length < 1) return 'Azure TLV without a subtype';
        if (value[0] === PP2_SUBTYPE_AZURE_PRIVATEENDPOINT_LINKID) {
          if (value.length !== 5) return `Azure LINKID of ${value.length - 1} bytes, expected 4`;
          t.azureLinkId = value.readUInt32LE(1);
        }
        break;
      default: break;
    }
  }
  return Object.freeze(t);
}

function parseSsl(value: Buffer): ProxySslInfo | string {
  if (value.length < 5) return `PP2_TYPE_SSL of ${value.length} bytes, at least 5 (client, verify)`;
  const subs = splitTlvs(value, 5, value.length);
  if (typeof subs === 'string') return `in PP2_TYPE_SSL: ${subs}`;
  const client = value[0];
  const s: { -readonly [K in keyof ProxySslInfo]: ProxySslInfo[K] } = {
    client,
    verify: value.readUInt32BE(1),
    tls: (client & 0x01) !== 0,
    certInConnection: (client & 0x02) !== 0,
    certInSession: (client & 0x04) !== 0,
    raw: Object.freeze(subs),
  };
  for (const { type, value: v } of subs) {
    if (type === PP2_SUBTYPE_SSL_VERSION) s.version = v.toString('latin1');
    else if (type === PP2_SUBTYPE_SSL_CN) s.cn = v.toString('utf8');
    else if (type === PP2_SUBTYPE_SSL_CIPHER) s.cipher = v.toString('latin1');
    else if (type === PP2_SUBTYPE_SSL_SIG_ALG) s.sigAlg = v.toString('latin1');
    else if (type === PP2_SUBTYPE_SSL_KEY_ALG) s.keyAlg = v.toString('latin1');
  }
  return Object.freeze(s);
}

/** The spec: zero the checksum field, CRC32c the whole header, compare. */
function checksumMatches(bytes: Uint8Array, length: number): boolean {
  const copy = Buffer.from(bytes.subarray(0, length));
  const af = copy[13] >> 4;
  let at = 16 + (af === 1 ? 12 : af === 2 ? 36 : af === 3 ? 216 : 0);
  let expected = -1;
  while (at + 3 <= length) {
    const len = (copy[at + 1] << 8) | copy[at + 2];
    if (copy[at] === PP2_TYPE_CRC32C && len === 4) {
      expected = copy.readUInt32BE(at + 3);
      copy.fill(0, at + 3, at + 7);
    }
    at += 3 + len;
  }
  return crc32c(copy) === expected;
}
