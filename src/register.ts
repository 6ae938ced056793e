// `import 'node-toa/register'`: realRemoteAddress / realRemotePort /
// realRemoteFamily on every net.Socket (and so on TLS, http, https and http2
// sockets), plus capture at accept time so the answer survives a reset or
// destroy() that happens before the application asks.
import * as diagnostics from 'node:diagnostics_channel';
import * as net from 'node:net';
import type { AddressFamily, PeerAddress } from './lookup';
import { resolveAddress } from './lookup';

declare module 'node:net' {
  interface Socket {
    /** The client's address: from TOA when present, else the peer. Like remoteAddress, undefined when unknown. */
    readonly realRemoteAddress: string | undefined;
    readonly realRemotePort: number | undefined;
    readonly realRemoteFamily: AddressFamily | undefined;
  }
}

const kRegistered = Symbol.for('node-toa.registered');

function answer(socket: net.Socket): PeerAddress | undefined {
  const result = resolveAddress(socket);
  return result instanceof Error ? undefined : result;
}

// Runs for every accepted socket, in the same synchronous step as the
// 'connection' event (Node publishes right after emitting it). Captures only
// the address: one getpeername on AF_INET6 sockets, whatever the provider.
// A failure here is not an error: the getter will try again.
function capture(message: unknown): void {
  const socket = (message as { socket?: unknown }).socket;
  if (socket instanceof net.Socket) resolveAddress(socket);
}

export function register(): void {
  const proto = net.Socket.prototype as unknown as Record<symbol, unknown>;
  if (proto[kRegistered]) return;
  Object.defineProperty(proto, kRegistered, { value: true });
  Object.defineProperties(net.Socket.prototype, {
    realRemoteAddress: {
      configurable: true,
      get(this: net.Socket) { return answer(this)?.address; },
    },
    realRemotePort: {
      configurable: true,
      get(this: net.Socket) { return answer(this)?.port; },
    },
    realRemoteFamily: {
      configurable: true,
      get(this: net.Socket) { return answer(this)?.family; },
    },
  });
  diagnostics.subscribe('net.server.socket', capture);
}

register();
