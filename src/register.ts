// `import 'node-toa/register'`: realRemoteAddress / realRemotePort /
// realRemoteFamily on every net.Socket (and so on TLS, http, https and http2
// sockets), plus capture at accept time so the answer survives a reset or
// destroy() that happens before the application asks.
import * as diagnostics from 'node:diagnostics_channel';
import * as net from 'node:net';
import type { AddressFamily, LookupResult } from './lookup';
import { kResult, resolve } from './lookup';

declare module 'node:net' {
  interface Socket {
    /** The client's address: from TOA when present, else the peer. Like remoteAddress, undefined when unknown. */
    readonly realRemoteAddress: string | undefined;
    readonly realRemotePort: number | undefined;
    readonly realRemoteFamily: AddressFamily | undefined;
  }
}

const kRegistered = Symbol.for('node-toa.registered');

type Holder = { [kResult]?: LookupResult };

function answer(socket: net.Socket): LookupResult | undefined {
  const cached = (socket as unknown as Holder)[kResult];
  if (cached !== undefined) return cached;
  const result = resolve(socket);
  return result instanceof Error ? undefined : result;
}

// Runs for every accepted socket, before 'connection' is emitted. One query
// per connection (one getpeername when no provider is active); a failure
// here is not an error: the getter will try again and report undefined.
function capture(message: unknown): void {
  const socket = (message as { socket?: unknown }).socket;
  if (socket instanceof net.Socket) resolve(socket);
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
