// lookup(): the real client address of a socket, and where it came from.
// The public API and its types; the work is in query.ts (the addon),
// cache.ts (per-connection answers) and validate.ts (arguments).
import type * as net from 'node:net';
import { resolve } from './cache';
import type { ProxyTlvs } from './proxy-protocol/types';
import { queryFd } from './query';
import { validateFd, validateSocket } from './validate';

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

/**
 * The real client address of a connected TCP socket (net, tls, http, https,
 * http2 sockets). Computed once per connection and cached on the socket. Throws a TypeError
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

/** lookup() for a raw file descriptor. The fd is checked to be a TCP socket. */
export function lookupFd(fd: number): LookupResult {
  validateFd(fd);
  const result = queryFd(fd, true) as LookupResult | Error;
  if (result instanceof Error) throw result;
  return result;
}

