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
    readHeader(socket, peer);
  };

  const readHeader = (socket: net.Socket, peer: PeerAddress): void => {
    handle.pending++;
    let received: Buffer | undefined;
    let done = false;
    const finish = (): void => {
      done = true;
      handle.pending--;
      clearTimeout(timer);
      socket.removeListener('readable', onReadable);
      socket.removeListener('end', onEnd);
      socket.removeListener('error', onError);
      socket.removeListener('close', onEnd);
    };
    const handOn = (rest: Buffer | undefined): void => {
      finish();
      // unshift puts the bytes back in front of the stream: whatever reads
      // the socket next (TLS, the HTTP parser, http2, the application) gets
      // them first, then the rest of the connection.
      if (rest?.length) socket.unshift(rest);
      pass(socket);
    };
    const fail = (reason: keyof ProxyProtocolCounters, message: string): void => {
      finish();
      refuse(socket, reason, message);
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while (!done && (chunk = socket.read() as Buffer | null) !== null) {
        received = received ? Buffer.concat([received, chunk]) : chunk;
        const r = parseProxyHeader(received, maxHeaderBytes);
        if (r.status === 'incomplete') continue;
        if (r.status === 'ok') {
          setProxyResult(socket, answer(peer, r.header));
          handle.count(r.header.command === 'PROXY' ? 'proxied' : 'local');
          handOn(received.length > r.length ? received.subarray(r.length) : undefined);
        } else if (r.reason === 'not-proxy' && mode === 'optional') {
          handle.count('noHeader');
          handOn(received);
        } else {
          fail(REFUSAL_COUNTER[r.reason], r.message);
        }
      }
    };
    const onEnd = (): void => {
      if (!done) fail('closed', 'the peer closed the connection before the header was complete');
    };
    const onError = (err: Error): void => {
      if (!done) fail('closed', `the connection failed before the header was complete: ${(err as { code?: string }).code ?? err.message}`);
    };
    const onTimeout = (): void => {
      if (done) return;
      if (mode === 'optional' && received === undefined) {
        // A protocol where the server speaks first, from a trusted peer that sends no header.
        handle.count('noHeader');
        handOn(undefined);
      } else {
        fail('timeout', `no complete PROXY protocol header within ${timeoutMs} ms`);
      }
    };
    const timer = setTimeout(onTimeout, timeoutMs);
    socket.on('readable', onReadable);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
  };

  s.emit = function emit(this: net.Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'connection' && args[0] instanceof net.Socket) {
      onConnection(args[0]);
      return true;
    }
    return baseEmit().call(this, event, ...args);
  };
  s[kWrapped] = true;
  return handle;
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
  const peer: PeerAddress = Object.freeze({ address: found.address, port: found.port, family: found.family });
  const tlvs = header.tlvs?.raw.length ? { tlvs: header.tlvs } : {};
  if (header.command === 'LOCAL' || !header.source || !header.destination) {
    return Object.freeze({ ...peer, source: 'peer' as const, ...tlvs });
  }
  // Like the TOA providers and remoteAddress: an IPv4 client on an AF_INET6
  // socket (a '::' listener) reads as '::ffff:a.b.c.d', family IPv6.
  const mapped = peer.family === 'IPv6';
  const fit = (a: PeerAddress): PeerAddress => (mapped && a.family === 'IPv4'
    ? Object.freeze({ address: `::ffff:${a.address}`, port: a.port, family: 'IPv6' as const })
    : a);
  return Object.freeze({
    ...fit(header.source),
    source: 'proxy-protocol' as const,
    proxy: peer,
    destination: fit(header.destination),
    ...tlvs,
  });
}
