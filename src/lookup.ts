// lookup(): the real client address of a socket, and where it came from.
import * as net from 'node:net';
import { constants } from 'node:os';
import { invalidArgType, systemError, toaError } from './errors';
import { getBinding, Meta, supported } from './native';
import { proxyResultOf } from './proxy-protocol/registry';
import type { ProxyTlvs } from './proxy-protocol/types';

export type AddressFamily = 'IPv4' | 'IPv6';

/**
 * What decided the answer:
 * - `'toa'`: a TOA provider (node-toa's kernel module or eBPF backend)
 *   decoded the address from the TCP option;
 * - `'toa-nat64'`: another vendor's module answered the Tencent/DPVS NAT64
 *   query (getsockopt 4096) with an IPv6 client;
 * - `'peer'`: plain getpeername. Behind a TOA module that rewrites
 *   getpeername (Tencent's, DPVS's) this can still be the client.
 * - `'proxy-protocol'`: a PROXY protocol v1/v2 header read by
 *   `acceptProxyProtocol` (node-toa/proxy-protocol). It wins over a TOA option
 *   on the same connection: the header is written by the hop that accepted
 *   the client, an option only by the last full-NAT hop before this server.
 */
export type LookupSource = 'toa' | 'toa-nat64' | 'peer' | 'proxy-protocol';

export interface PeerAddress {
  readonly address: string;
  readonly port: number;
  readonly family: AddressFamily;
}

export interface LookupResult extends PeerAddress {
  readonly source: LookupSource;
  /** The load balancer the connection came through, when a provider said (PROXY protocol: the peer that sent the header). */
  readonly proxy?: PeerAddress;
  /** Only with source `'proxy-protocol'`: the address the client connected to, as the header says. */
  readonly destination?: PeerAddress;
  /** Only with source `'proxy-protocol'` and a v2 header: its TLVs, decoded and raw. */
  readonly tlvs?: ProxyTlvs;
  /**
   * Only with source `'toa'`: true when the option arrived from a source in
   * the provider's configured trusted ranges, false when the provider
   * accepts options from anyone (no trusted ranges configured).
   */
  readonly trusted?: boolean;
  /** True when a TOA option was seen but ignored: its source is not trusted. */
  readonly rejected?: boolean;
  /** TCP option kind that carried the address (200, 253, 254...). */
  readonly optionKind?: number;
}

const SYSCALLS = ['', 'getsockopt', 'getpeername'] as const;
const SOURCES: readonly LookupSource[] = ['peer', 'toa', 'toa-nat64'];
const FLAG_PRESENT = 0x1;
const FLAG_TRUSTED = 0x4;
const FLAG_UNTRUSTED = 0x8;

// One scratch area for every call: the addon writes numbers here instead of
// allocating an object per query.
let meta: Int32Array | undefined;
const strings: string[] = ['', ''];

function familyName(n: number): AddressFamily {
  return n === 6 ? 'IPv6' : 'IPv4';
}

/** Why `query` failed, as an Error with a Node-style code. */
function queryError(m: Int32Array): Error {
  if (m[Meta.NotTcp]) {
    const what = m[Meta.Domain] === 1 ? 'a Unix domain socket'
      : m[Meta.Type] === 2 ? 'a UDP socket' : `a socket of domain ${m[Meta.Domain]}, type ${m[Meta.Type]}`;
    return toaError('ERR_TOA_NOT_TCP', `TOA applies to TCP sockets only; this is ${what}`);
  }
  if (m[Meta.Errno] === constants.errno.EPROTO) {
    return toaError('ERR_TOA_BAD_ANSWER',
      'the TOA provider answered getsockopt with a structure this version cannot read');
  }
  return systemError(m[Meta.Errno], SYSCALLS[m[Meta.Syscall]] || 'getsockopt');
}

/**
 * Runs the native query; returns the result or the error (never throws).
 * With `addressOnly` the answer may be just a PeerAddress (no `source`):
 * on AF_INET6 sockets getpeername alone is the client's address.
 */
export function queryFd(fd: number, checkType: boolean, addressOnly = false): LookupResult | PeerAddress | Error {
  const binding = getBinding();
  const m = meta ?? (meta = new Int32Array(binding.META_LENGTH));
  if (!binding.query(fd, checkType, addressOnly, m, strings)) return queryError(m);
  const address = strings[0];
  const port = m[Meta.Port];
  const family = familyName(m[Meta.Family]);
  if (!m[Meta.Complete]) return Object.freeze({ address, port, family });
  const source = SOURCES[m[Meta.Source]];
  const flags = m[Meta.Flags];
  const result: {
    -readonly [K in keyof LookupResult]: LookupResult[K]
  } = { address, port, family, source };
  if (m[Meta.ProxyFamily]) {
    result.proxy = Object.freeze({
      address: strings[1], port: m[Meta.ProxyPort], family: familyName(m[Meta.ProxyFamily]),
    });
  }
  if (source === 'toa') result.trusted = (flags & FLAG_TRUSTED) !== 0;
  if (flags & FLAG_UNTRUSTED && !(flags & FLAG_PRESENT)) result.rejected = true;
  if (m[Meta.OptKind]) result.optionKind = m[Meta.OptKind];
  return Object.freeze(result);
}

function isComplete(answer: LookupResult | PeerAddress): answer is LookupResult {
  return 'source' in answer;
}

// Symbol.for: one slot per socket even if the package is loaded twice
// (bundlers). kResult holds a full answer, kAddress just the address when
// only that was needed (the getters, the accept-time capture).
export const kResult: unique symbol = Symbol.for('node-toa.result') as never;
export const kAddress: unique symbol = Symbol.for('node-toa.address') as never;

interface SocketInternals {
  _handle?: { fd?: number } | null;
  destroyed?: boolean;
  // A server-side TLSSocket wraps the accepted TCP socket, which is the one
  // the accept-time capture saw.
  _parent?: SocketInternals | null;
  [kResult]?: LookupResult;
  [kAddress]?: PeerAddress;
}

function validateSocket(socket: unknown): asserts socket is net.Socket {
  if (!(socket instanceof net.Socket)) throw invalidArgType('socket', 'an instance of net.Socket', socket);
}

function store(s: SocketInternals, answer: LookupResult | PeerAddress): void {
  if (isComplete(answer)) s[kResult] = answer;
  else s[kAddress] = answer;
}

/** The full answer for a socket without throwing: cached, or a fresh query. */
export function resolve(socket: net.Socket): LookupResult | Error {
  const proxied = proxyResultOf(socket);
  if (proxied !== undefined) return proxied;
  const s = socket as unknown as SocketInternals;
  const cached = s[kResult] ?? s._parent?.[kResult];
  if (cached !== undefined) return cached;
  if (!supported) return remember(s, fromNode(socket));
  const result = queryHandle(s, false) as LookupResult | Error;
  if (result instanceof Error) {
    if (s[kAddress] ?? s._parent?.[kAddress]) {
      return toaError('ERR_SOCKET_CLOSED',
        'Socket is closed: its address was captured (socket.realRemoteAddress) but where it came from was not; call lookup() while the socket is open');
    }
    return result;
  }
  s[kResult] = result;
  return result;
}

/** Just the address, for the getters and the capture: the cheapest query that knows it. */
export function resolveAddress(socket: net.Socket): PeerAddress | Error {
  const proxied = proxyResultOf(socket);
  if (proxied !== undefined) return proxied;
  const s = socket as unknown as SocketInternals;
  const cached = s[kResult] ?? s[kAddress] ?? s._parent?.[kResult] ?? s._parent?.[kAddress];
  if (cached !== undefined) return cached;
  if (!supported) return remember(s, fromNode(socket));
  const result = queryHandle(s, true);
  if (!(result instanceof Error)) store(s, result);
  return result;
}

function remember(s: SocketInternals, result: LookupResult | Error): LookupResult | Error {
  if (!(result instanceof Error)) s[kResult] = result;
  return result;
}

function queryHandle(s: SocketInternals, addressOnly: boolean): LookupResult | PeerAddress | Error {
  const handle = s._handle;
  if (!handle) {
    return s.destroyed
      ? toaError('ERR_SOCKET_CLOSED', 'Socket is closed and no address was captured before it closed')
      : systemError(constants.errno.ENOTCONN, 'getpeername');
  }
  const fd = handle.fd;
  if (typeof fd !== 'number' || fd < 0) return systemError(constants.errno.ENOTCONN, 'getpeername');
  return queryFd(fd, false, addressOnly);
}

// No TOA provider can exist off Linux: the peer is the answer.
function fromNode(socket: net.Socket): LookupResult | Error {
  const { remoteAddress: address, remotePort: port, remoteFamily: family } = socket;
  if (address === undefined || port === undefined) {
    return socket.destroyed
      ? toaError('ERR_SOCKET_CLOSED', 'Socket is closed and no address was captured before it closed')
      : systemError(constants.errno.ENOTCONN, 'getpeername');
  }
  return Object.freeze({ address, port, family: family as AddressFamily, source: 'peer' as const });
}

/**
 * The real client address of a connected TCP socket (net, tls, http, https,
 * http2 sockets). Computed once per socket and cached. Throws a TypeError
 * (`ERR_INVALID_ARG_TYPE`) for anything but a net.Socket, and a Node-style
 * error (`ENOTCONN`, `ERR_SOCKET_CLOSED`, `ERR_TOA_NOT_TCP`...) when there is
 * no answer.
 */
export function lookup(socket: net.Socket): LookupResult {
  validateSocket(socket);
  const result = resolve(socket);
  if (result instanceof Error) throw result;
  return result;
}

function validateFd(fd: unknown): asserts fd is number {
  if (typeof fd !== 'number' || !Number.isInteger(fd)) throw invalidArgType('fd', 'an integer', fd);
  if (fd < 0 || fd > 0x7fffffff) {
    throw toaError('ERR_OUT_OF_RANGE',
      `The value of "fd" is out of range. It must be >= 0 && <= 2147483647. Received ${fd}`, RangeError);
  }
}

/** lookup() for a raw file descriptor. The fd is checked to be a TCP socket. */
export function lookupFd(fd: number): LookupResult {
  validateFd(fd);
  const result = queryFd(fd, true) as LookupResult | Error;
  if (result instanceof Error) throw result;
  return result;
}

export { validateFd, validateSocket };
