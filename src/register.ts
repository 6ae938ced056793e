// `import 'node-toa/register'`: realRemoteAddress / realRemotePort /
// realRemoteFamily on every net.Socket (and so on TLS, http, https and http2
// sockets), plus capture at accept time so the answer survives a reset or
// destroy() that happens before the application asks.
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { resolveAddress } from './cache';
import type { AddressFamily, PeerAddress } from './lookup';
import { packageRoot } from './native';

declare module 'node:net' {
  interface Socket {
    /** The client's address: from TOA when present, else the peer. Like remoteAddress, undefined when unknown; never throws. */
    readonly realRemoteAddress: string | undefined;
    readonly realRemotePort: number | undefined;
    readonly realRemoteFamily: AddressFamily | undefined;
  }
}

const GETTERS = ['realRemoteAddress', 'realRemotePort', 'realRemoteFamily'] as const;
// Process-wide: which copy of node-toa installed the getters and the capture.
const kInstalled = Symbol.for('node-toa.register');

interface Installed { version: string; root: string }

function ownVersion(): string {
  // A bundle may carry dist/ without package.json: importing must not fail.
  try {
    return (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

const self: Installed = { version: ownVersion(), root: packageRoot };

function answer(socket: net.Socket): PeerAddress | undefined {
  const result = resolveAddress(socket);
  return result instanceof Error ? undefined : result;
}

// Every accepted socket, before any 'connection' listener of the
// application runs (those may destroy it synchronously: a deny-list, a
// limiter). Node emits 'connection' from lib/net.js onconnection and only
// then publishes net.server.socket, so the diagnostics channel comes too
// late for them; net.Server.prototype.emit is reached first by every
// net/tls/http/https/http2 server. Only the address is captured: one
// getpeername on AF_INET6 sockets, whatever the provider.
function capture(socket: unknown): void {
  // A failure here is not the application's problem: the getters try again,
  // and an exception would be thrown into Node's accept path.
  try {
    if (socket instanceof net.Socket) resolveAddress(socket);
  } catch { /* see above */ }
}

function installCapture(): void {
  const emit = net.Server.prototype.emit;
  net.Server.prototype.emit = function emitWithCapture(this: net.Server, event: string | symbol) {
    if (event === 'connection') capture(arguments[1]);
    // eslint-disable-next-line prefer-rest-params
    return Reflect.apply(emit, this, arguments) as boolean;
  };
}

function warn(message: string): void {
  process.emitWarning(message, { code: 'NODE_TOA_REGISTER_CONFLICT' });
}

let done = false;

/** Installs the getters and the capture; idempotent, never throws. */
export function register(): void {
  if (done) return;
  const g = globalThis as unknown as Record<symbol, Installed | undefined>;
  const other = g[kInstalled];
  if (other) {
    // Another copy of node-toa (a second version in node_modules, a bundle)
    // installed them first. Its getters answer for every socket; each
    // copy's lookup() still answers for itself.
    if (other.version !== self.version) {
      warn(`node-toa ${self.version} (${self.root}) found the getters of node-toa ${other.version} (${other.root}) already installed, and left them: ` +
        'socket.realRemoteAddress comes from that copy. Deduplicate node-toa (npm dedupe, or one version in package.json).');
    }
    done = true;
    return;
  }
  const proto = net.Socket.prototype;
  const taken = GETTERS.filter((name) => Object.getOwnPropertyDescriptor(proto, name) !== undefined);
  if (taken.length) {
    warn(`net.Socket.prototype already has ${taken.join(', ')} from another library: node-toa left ${taken.length > 1 ? 'them' : 'it'} as ${taken.length > 1 ? 'they are' : 'it is'} ` +
      'and installed no getters (lookup() from node-toa still works). Remove the other definition and call register() from node-toa/register again.');
    return;
  }
  const getter = (pick: (a: PeerAddress) => unknown) => ({
    configurable: true,
    get(this: net.Socket) { const a = answer(this); return a === undefined ? undefined : pick(a); },
  });
  Object.defineProperties(proto, {
    realRemoteAddress: getter((a) => a.address),
    realRemotePort: getter((a) => a.port),
    realRemoteFamily: getter((a) => a.family),
  });
  installCapture();
  Object.defineProperty(g, kInstalled, { value: self, configurable: true });
  done = true;
}

register();
