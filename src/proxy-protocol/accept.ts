// acceptProxyProtocol(server, options): reads the PROXY protocol header of
// every accepted connection before anything else sees the socket (net, tls,
// http, https, http2 all emit 'connection' first), then hands the socket on
// with the bytes after the header put back, and the header's answer in the
// registry where lookup() and the realRemote* getters find it.
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import type { AddressFamily, LookupResult, PeerAddress } from '../lookup';
import { resolveAddress } from '../cache';
import { trustedMatcher } from './cidr';
import type { ProxyHeader, ProxyRefusal } from './parse';
import { parseProxyHeader, V2_MAX_BYTES } from './parse';
import { setProxyResult } from './registry';

export type ProxyProtocolMode = 'required' | 'optional';

export interface AcceptProxyProtocolOptions {
  /** CIDRs ('203.0.113.0/24', '2001:db8::/32') or single addresses of the balancers allowed to send a header. Required, non-empty. */
  readonly trusted: readonly string[];
  /**
   * 'required' (default): every connection must come from a trusted peer and
   * start with a valid header; anything else is destroyed.
   * 'optional': untrusted peers are passed on untouched (no header is read:
   * theirs would be a forgery), and a trusted peer whose first bytes are not
   * a PROXY signature, or who sends nothing within timeoutMs, is passed on too.
   */
  readonly mode?: ProxyProtocolMode;
  /** Time allowed for the whole header, from accept. Default 3000 (the spec: at least 3 s, to cover a retransmit). */
  readonly timeoutMs?: number;
  /** Largest header accepted (v1 lines are bounded by 107 bytes anyway). Default 4096, at most 65551. */
  readonly maxHeaderBytes?: number;
}

/** What happened to connections, one counter per outcome. */
export interface ProxyProtocolCounters {
  /** Header with the client's addresses: answered with source 'proxy-protocol'. */
  proxied: number;
  /** v2 LOCAL, v1 UNKNOWN, or v2 without usable addresses (UNSPEC, UNIX): answered with the peer, source 'peer'. */
  local: number;
  /** From a peer outside `trusted`, destroyed ('required'). */
  untrusted: number;
  /** From a peer outside `trusted`, passed on untouched ('optional'). */
  untrustedPassed: number;
  /** Trusted peer, no header ('optional'): passed on untouched. */
  noHeader: number;
  /** Trusted peer, first bytes are no PROXY signature ('required'): destroyed. */
  notProxy: number;
  malformed: number;
  oversized: number;
  badLength: number;
  badTlv: number;
  checksum: number;
  /** Header not complete within timeoutMs (slowloris; nothing sent in 'required' mode). */
  timeout: number;
  /** The peer closed or reset the connection before the header was complete. */
  closed: number;
}

export interface ProxyProtocolRefusal {
  readonly reason: keyof ProxyProtocolCounters;
  readonly message: string;
  readonly remoteAddress?: string;
}

const REFUSAL_COUNTER: Record<ProxyRefusal, keyof ProxyProtocolCounters> = {
  'not-proxy': 'notProxy',
  malformed: 'malformed',
  oversized: 'oversized',
  'bad-length': 'badLength',
  'bad-tlv': 'badTlv',
  checksum: 'checksum',
};

function zeroCounters(): ProxyProtocolCounters {
  return {
    proxied: 0, local: 0, untrusted: 0, untrustedPassed: 0, noHeader: 0, notProxy: 0, malformed: 0,
    oversized: 0, badLength: 0, badTlv: 0, checksum: 0, timeout: 0, closed: 0,
  };
}

const totals = zeroCounters();

/** The counters of every wrapped server of this process, summed. */
export function proxyProtocolCounters(): Readonly<ProxyProtocolCounters> {
  return { ...totals };
}

/**
 * Returned by acceptProxyProtocol. Emits 'refused' (ProxyProtocolRefusal) for
 * every connection it destroys.
 */
export class ProxyProtocolHandle extends EventEmitter {
  readonly counters: Readonly<ProxyProtocolCounters> = zeroCounters();
  /** Connections whose header is still being read. */
  pending = 0;
  #unwrap: () => void;

  constructor(unwrap: () => void) {
    super();
    this.#unwrap = unwrap;
  }

  /** Stops reading headers on new connections (those in progress finish). */
  remove(): void {
    this.#unwrap();
  }

  count(name: keyof ProxyProtocolCounters): void {
    (this.counters as ProxyProtocolCounters)[name]++;
    totals[name]++;
  }
}

function invalidArg(name: string, message: string): TypeError {
  return Object.assign(new TypeError(`The "${name}" option ${message}`), { code: 'ERR_INVALID_ARG_VALUE' });
}

function positiveInt(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) {
    throw invalidArg(name, `must be an integer ${min}-${max}`);
  }
  return value as number;
}

const kWrapped = Symbol('node-toa.proxy-protocol.wrapped');

type Emit = (this: net.Server, event: string | symbol, ...args: unknown[]) => boolean;

/** Makes `server` read a PROXY protocol v1/v2 header on every connection first. */
export function acceptProxyProtocol(server: net.Server, options: AcceptProxyProtocolOptions): ProxyProtocolHandle {
  if (!(server instanceof net.Server)) {
    throw Object.assign(new TypeError('The "server" argument must be a net.Server (net, tls, http, https, http2)'), { code: 'ERR_INVALID_ARG_TYPE' });
  }
  if (typeof options !== 'object' || options === null) throw invalidArg('options', 'must be an object with "trusted"');
  const trusted = trustedMatcher(options.trusted, (message) => invalidArg('trusted', message));
  const mode = options.mode ?? 'required';
  if (mode !== 'required' && mode !== 'optional') throw invalidArg('mode', "must be 'required' or 'optional'");
  const timeoutMs = positiveInt('timeoutMs', options.timeoutMs, 3000, 1, 2 ** 31 - 1);
  const maxHeaderBytes = positiveInt('maxHeaderBytes', options.maxHeaderBytes, 4096, 16, V2_MAX_BYTES);
  const s = server as unknown as Omit<net.Server, 'emit'> & { [kWrapped]?: boolean; emit: Emit };
  if (s[kWrapped]) {
    throw Object.assign(new Error('acceptProxyProtocol: this server already reads PROXY protocol headers'), { code: 'ERR_PROXY_PROTOCOL_ALREADY_WRAPPED' });
  }

  const hadOwnEmit = Object.prototype.hasOwnProperty.call(s, 'emit');
  const originalEmit = s.emit;
  const handle = new ProxyProtocolHandle(() => {
    if (hadOwnEmit) s.emit = originalEmit;
    else delete (s as { emit?: Emit }).emit;
    s[kWrapped] = false;
  });
  // Looked up per call, not kept: node-toa/register (or anything else) may
  // wrap net.Server.prototype.emit after this server was wrapped.
  const baseEmit = (): Emit => (hadOwnEmit ? originalEmit : (Object.getPrototypeOf(s) as { emit: Emit }).emit);
  const pass = (socket: net.Socket): void => { baseEmit().call(server, 'connection', socket); };
  const refuse = (socket: net.Socket, reason: keyof ProxyProtocolCounters, message: string): void => {
    handle.count(reason);
    const remoteAddress = socket.remoteAddress;
    socket.destroy();
    handle.emit('refused', { reason, message, remoteAddress } satisfies ProxyProtocolRefusal);
  };

  const wrap: Wrap = { handle, mode, timeoutMs, maxHeaderBytes, pass, refuse };
  const onConnection = (socket: net.Socket): void => {
    const peer = peerOf(socket);
    if (peer === undefined) {
      // Reset before we got here: nobody can read it anyway.
      refuse(socket, 'closed', 'the peer reset the connection before the header was read');
      return;
    }
    if (!trusted(peer.address)) {
      if (mode === 'optional') {
        handle.count('untrustedPassed');
        pass(socket);
      } else {
        refuse(socket, 'untrusted', `PROXY protocol from ${peer.address}, which is not in trusted`);
      }
      return;
    }
    readHeader(socket, peer, wrap);
  };

  s.emit = function emit(this: net.Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'connection' && args[0] instanceof net.Socket) {
      onConnection(args[0]);
      return true;
    }
    return baseEmit().call(this, event, ...args);
  };
  useTimeout(timeoutMs);
  s[kWrapped] = true;
  return handle;
}

/** What the connections of one wrapped server share. */
interface Wrap {
  readonly handle: ProxyProtocolHandle;
  readonly mode: ProxyProtocolMode;
  readonly timeoutMs: number;
  readonly maxHeaderBytes: number;
  readonly pass: (socket: net.Socket) => void;
  readonly refuse: (socket: net.Socket, reason: keyof ProxyProtocolCounters, message: string) => void;
}

/** A connection whose header is still being read. */
interface Reader {
  readonly peer: PeerAddress;
  readonly wrap: Wrap;
  readonly deadline: number;
  /** Paused at creation (the server's pauseOnConnect): handed on paused again. */
  readonly paused: boolean;
  received: Buffer | undefined;
}

// Every connection of the process whose header is still being read. The
// listeners below are shared by all of them (no closures per connection)
// and find their connection's state here.
const readers = new Map<net.Socket, Reader>();

// One coarse sweep for all deadlines instead of a timer per connection: a
// connection is given up between timeoutMs and timeoutMs plus one period,
// never before. The period is a tenth of the shortest timeoutMs in use.
let sweepMs = Infinity;
let sweepTimer: NodeJS.Timeout | undefined;

function useTimeout(timeoutMs: number): void {
  const period = Math.max(1, Math.floor(timeoutMs / 10));
  if (period >= sweepMs) return;
  sweepMs = period;
  if (sweepTimer !== undefined) {
    clearInterval(sweepTimer);
    sweepTimer = undefined;
    startSweep();
  }
}

function startSweep(): void {
  // unref: a connection stuck in its header must not keep the process alive on its own.
  sweepTimer = setInterval(sweep, sweepMs).unref();
}

function sweep(): void {
  const now = Date.now();
  for (const [socket, r] of readers) if (now >= r.deadline) timedOut(socket, r);
  if (readers.size === 0 && sweepTimer !== undefined) {
    clearInterval(sweepTimer);
    sweepTimer = undefined;
  }
}

function readHeader(socket: net.Socket, peer: PeerAddress, wrap: Wrap): void {
  wrap.handle.pending++;
  // The server's pauseOnConnect left the socket paused (readableFlowing false),
  // where a 'data' listener alone would never see a byte.
  const paused = socket.readableFlowing === false;
  readers.set(socket, { peer, wrap, deadline: Date.now() + wrap.timeoutMs, paused, received: undefined });
  if (sweepTimer === undefined) startSweep();
  // 'data' rather than 'readable': the first segment arrives in one emit
  // straight from the handle's read, without the switches of paused mode
  // (a nextTick to start, one per 'readable', one to leave it).
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('close', onEnd);
  socket.on('error', onError);
  if (paused) socket.resume();
}

function finish(socket: net.Socket, r: Reader): void {
  readers.delete(socket);
  r.wrap.handle.pending--;
  socket.removeListener('data', onData);
  socket.removeListener('end', onEnd);
  socket.removeListener('close', onEnd);
  socket.removeListener('error', onError);
}

function handOn(socket: net.Socket, r: Reader, rest: Buffer | undefined): void {
  finish(socket, r);
  // Out of flowing mode before anything else can arrive: with no 'data'
  // listener left, a flowing stream would emit the next chunk to nobody.
  // null is the state of a fresh socket: whoever reads next (a 'data'
  // listener, TLS, the HTTP parser, http2) starts it as on any socket.
  if (r.paused) socket.pause();
  else (socket as { readableFlowing: boolean | null }).readableFlowing = null;
  // unshift puts the bytes back in front of the stream: whatever reads the
  // socket next gets them first, then the rest of the connection.
  if (rest?.length) socket.unshift(rest);
  r.wrap.pass(socket);
}

function fail(socket: net.Socket, r: Reader, reason: keyof ProxyProtocolCounters, message: string): void {
  finish(socket, r);
  r.wrap.refuse(socket, reason, message);
}

function onData(this: net.Socket, chunk: Buffer): void {
  const r = readers.get(this);
  if (r === undefined) return;
  const received = r.received === undefined ? chunk : Buffer.concat([r.received, chunk]);
  const { wrap } = r;
  const p = parseProxyHeader(received, wrap.maxHeaderBytes);
  if (p.status === 'incomplete') {
    r.received = received;
  } else if (p.status === 'ok') {
    setProxyResult(this, answer(r.peer, p.header));
    wrap.handle.count(p.header.command === 'PROXY' ? 'proxied' : 'local');
    handOn(this, r, received.length > p.length ? received.subarray(p.length) : undefined);
  } else if (p.reason === 'not-proxy' && wrap.mode === 'optional') {
    wrap.handle.count('noHeader');
    handOn(this, r, received);
  } else {
    fail(this, r, REFUSAL_COUNTER[p.reason], p.message);
  }
}

function onEnd(this: net.Socket): void {
  const r = readers.get(this);
  if (r !== undefined) fail(this, r, 'closed', 'the peer closed the connection before the header was complete');
}

function onError(this: net.Socket, err: Error): void {
  const r = readers.get(this);
  if (r !== undefined) fail(this, r, 'closed', `the connection failed before the header was complete: ${(err as { code?: string }).code ?? err.message}`);
}

function timedOut(socket: net.Socket, r: Reader): void {
  if (r.wrap.mode === 'optional' && r.received === undefined) {
    // A protocol where the server speaks first, from a trusted peer that sends no header.
    r.wrap.handle.count('noHeader');
    handOn(socket, r, undefined);
  } else {
    fail(socket, r, 'timeout', `no complete PROXY protocol header within ${r.wrap.timeoutMs} ms`);
  }
}

/**
 * The peer as lookup() and the getters report it without a header: under a
 * TOA provider, the address the option named. Through the package's own
 * cache, so that the accept-time capture of node-toa/register, which runs
 * right after, finds it there instead of asking the kernel a second time
 * (measured: the second query cost ~20% of the accept rate).
 */
function peerOf(socket: net.Socket): PeerAddress | undefined {
  const found = resolveAddress(socket);
  if (!(found instanceof Error)) return found;
  // No addon (ERR_TOA_NATIVE_MISSING) or no answer: Node's own view.
  const { remoteAddress: address, remotePort: port, remoteFamily: family } = socket;
  return address === undefined || port === undefined ? undefined : Object.freeze({ address, port, family: family as AddressFamily });
}

/** The lookup() answer for a header: the client, or the peer for LOCAL / UNKNOWN. */
function answer(found: PeerAddress, header: ProxyHeader): LookupResult {
  // Only the address: a cached full answer would carry its own source.
  // Literals rather than spreads: this runs on every connection.
  const { address, port, family } = found;
  const tlvs = header.tlvs !== undefined && header.tlvs.raw.length > 0 ? header.tlvs : undefined;
  if (header.command === 'LOCAL' || !header.source || !header.destination) {
    return Object.freeze(tlvs === undefined
      ? { address, port, family, source: 'peer' as const }
      : { address, port, family, source: 'peer' as const, tlvs });
  }
  // Like the TOA providers and remoteAddress: an IPv4 client on an AF_INET6
  // socket (a '::' listener) reads as '::ffff:a.b.c.d', family IPv6.
  const mapped = family === 'IPv6';
  const fit = (a: PeerAddress): PeerAddress => (mapped && a.family === 'IPv4'
    ? Object.freeze({ address: `::ffff:${a.address}`, port: a.port, family: 'IPv6' as const })
    : a);
  const client = fit(header.source);
  const proxy: PeerAddress = Object.freeze({ address, port, family });
  const destination = fit(header.destination);
  return Object.freeze(tlvs === undefined
    ? { address: client.address, port: client.port, family: client.family, source: 'proxy-protocol' as const, proxy, destination }
    : { address: client.address, port: client.port, family: client.family, source: 'proxy-protocol' as const, proxy, destination, tlvs });
}
