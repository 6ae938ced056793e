// Where the wrapper leaves a connection's PROXY protocol answer, and where
// lookup() and the realRemote* getters look first. A symbol slot on the
// socket: nothing to clean up, it dies with the socket.
import type * as net from 'node:net';
import type { LookupResult } from '../lookup';

// Symbol.for: one slot even if the package is loaded twice (bundlers, CJS + ESM).
const kProxyResult: unique symbol = Symbol.for('node-toa.proxy-protocol.result') as never;

interface Slot {
  [kProxyResult]?: LookupResult;
  // A server-side TLSSocket wraps the accepted TCP socket, which is the one
  // the wrapper read the header from. http2's session.socket is a Proxy that
  // forwards property reads to the real socket, so it needs no walk of its own.
  _parent?: Slot | null;
}

/** The answer the PROXY protocol header gave for this connection, if it carried one. */
export function proxyResultOf(socket: net.Socket): LookupResult | undefined {
  const s = socket as unknown as Slot;
  return s[kProxyResult] ?? s._parent?.[kProxyResult];
}

export function setProxyResult(socket: net.Socket, result: LookupResult): void {
  (socket as unknown as Slot)[kProxyResult] = result;
}
