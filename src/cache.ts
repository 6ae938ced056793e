// The per-connection cache behind lookup() and the getters. An answer is
// kept on the socket together with the identity of the connection it
// belongs to: a client socket can connect again after it closed, and the
// old peer must never be reported for the new connection.
import * as net from 'node:net';
import { constants } from 'node:os';
import { systemError, toaError } from './errors';
import type { LookupResult, PeerAddress } from './lookup';
import { countSource } from './counts';
import { supported } from './native';
import { proxyResultOf } from './proxy-protocol/registry';
import { queryFd } from './query';

// Node gives every connection (every new handle) a fresh async id, kept on
// the socket under an internal symbol that survives destroy() and changes on
// reconnect (lib/net.js initSocketHandle). Where a Node release lacks it,
// the handle itself is the identity: correct, but nothing survives close.
const kAsyncId = Object.getOwnPropertySymbols(new net.Socket()).find((s) => s.description === 'async_id_symbol');

// Versioned: another copy of node-toa whose cache has another shape keeps
// its own slot; copies of the same format share one.
const CACHE_FORMAT = 2;
const kCache: unique symbol = Symbol.for(`node-toa.cache.v${CACHE_FORMAT}`) as never;

interface Entry {
  connection: unknown;
  /** A full answer (lookup()), which also answers the getters. */
  full?: LookupResult;
  /** Just the address (getters, accept-time capture). */
  address?: PeerAddress;
}

interface SocketInternals {
  _handle?: { fd?: number } | null;
  destroyed?: boolean;
  // A server-side TLSSocket wraps the accepted TCP socket, which is the one
  // the accept-time capture saw.
  _parent?: SocketInternals | null;
  [kCache]?: Entry;
  [key: symbol]: unknown;
}

function connectionOf(s: SocketInternals): unknown {
  return kAsyncId !== undefined ? s[kAsyncId] : s._handle;
}

function entryOf(s: SocketInternals | null | undefined): Entry | undefined {
  const e = s?.[kCache];
  return e !== undefined && e.connection === connectionOf(s!) ? e : undefined;
}

function entryFor(s: SocketInternals): Entry {
  const e = entryOf(s);
  if (e) return e;
  const created: Entry = { connection: connectionOf(s) };
  s[kCache] = created;
  return created;
}

const closed = () => toaError('ERR_SOCKET_CLOSED', 'Socket is closed and no address was captured before it closed');

/** The full answer for a socket without throwing: cached, or a fresh query. */
export function resolve(socket: net.Socket): LookupResult | Error {
  const s = socket as unknown as SocketInternals;
  const proxied = proxyResultOf(socket);
  if (proxied !== undefined) {
    const e = entryFor(s);
    if (e.full !== proxied) {
      e.full = proxied;
      countSource(proxied);
    }
    return proxied;
  }
  const own = entryOf(s);
  const cached = own?.full ?? entryOf(s._parent)?.full;
  if (cached !== undefined) return cached;
  const result = supported ? queryHandle(s, false) as LookupResult | Error : fromNode(socket);
  if (result instanceof Error) {
    if (own?.address ?? entryOf(s._parent)?.address) {
      return toaError('ERR_SOCKET_CLOSED',
        'Socket is closed: its address was captured (socket.realRemoteAddress) but where it came from was not; call lookup() while the socket is open');
    }
    return result;
  }
  entryFor(s).full = result;
  countSource(result);
  return result;
}

/** Just the address, for the getters and the capture: the cheapest query that knows it. */
export function resolveAddress(socket: net.Socket): PeerAddress | Error {
  const proxied = proxyResultOf(socket);
  if (proxied !== undefined) return proxied;
  const s = socket as unknown as SocketInternals;
  const own = entryOf(s);
  const parent = entryOf(s._parent);
  const cached = own?.full ?? own?.address ?? parent?.full ?? parent?.address;
  if (cached !== undefined) return cached;
  const result = supported ? queryHandle(s, true) : fromNode(socket);
  if (result instanceof Error) return result;
  const e = entryFor(s);
  if (isComplete(result)) e.full = result;
  else e.address = result;
  return result;
}

function isComplete(answer: LookupResult | PeerAddress): answer is LookupResult {
  return 'source' in answer;
}

function queryHandle(s: SocketInternals, addressOnly: boolean): LookupResult | PeerAddress | Error {
  const handle = s._handle;
  if (!handle) return s.destroyed ? closed() : systemError(constants.errno.ENOTCONN, 'getpeername');
  const fd = handle.fd;
  if (typeof fd !== 'number' || fd < 0) return systemError(constants.errno.ENOTCONN, 'getpeername');
  return queryFd(fd, false, addressOnly);
}

// No TOA provider can exist off Linux: the peer is the answer.
function fromNode(socket: net.Socket): LookupResult | Error {
  const { remoteAddress: address, remotePort: port, remoteFamily: family } = socket;
  if (address === undefined || port === undefined) {
    return socket.destroyed ? closed() : systemError(constants.errno.ENOTCONN, 'getpeername');
  }
  return Object.freeze({ address, port, family: family as LookupResult['family'], source: 'peer' as const });
}
