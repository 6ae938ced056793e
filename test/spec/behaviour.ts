// The behaviour every TOA backend (kernel module, eBPF) must show to
// applications, as data plus one runner. A backend test supplies how to turn
// itself on and off; the rows and the checks are shared so both backends are
// held to the same table.
//
// Runs inside a guest as root: it needs the LB emulator
// (test/support/lb/index.mjs) and the addon (src/index.ts).
import net from 'node:net';
import { once } from 'node:events';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer } from '../support/lb/index.mjs';
import { lookup, getToaInfo, getNat64Peer } from '../../src/index';

export const CLIENT_V4 = '198.51.100.7';
export const CLIENT_V6 = '2001:db8:c1::7';
export const CLIENT_PORT = 4321;

export type Listen = '0.0.0.0' | '::';

export interface BackendConfig {
  /** option kinds carrying an IPv4 client (len 8); default [200] */
  ipv4Kinds?: number[];
  /** option kinds carrying an IPv6 client (len 20); default [253] */
  ipv6Kinds?: number[];
  /** trusted balancer CIDRs; empty = every source */
  trusted?: string[];
  /** local ports where TOA is honoured; empty = every port */
  ports?: number[];
}

export interface Backend {
  readonly name: string;
  /** Make the backend active with this configuration (idempotent). */
  enable(config: BackendConfig): Promise<void>;
  disable(): Promise<void>;
  /**
   * The getsockopt 4096 error this backend can produce where the table says
   * `code` (the eBPF backend before 5.18 cannot return EINVAL); identity if absent.
   */
  errno?(code: string): string;
}

/** What a server-side socket reports; every field is checked. */
export interface Observed {
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  lookup: { address: string; port: number; source: string };
  /** getsockopt 4096: the answer or the error code */
  nat64: { address: string; port: number } | { code: string };
  /** getsockopt 4097 */
  info: {
    present: boolean; nat64: boolean; trusted: boolean; untrusted: boolean;
    address: string; port: number; proxyAddress: string; proxyPort: number; optionKind: number;
  };
}

export interface Case {
  name: string;
  listen: Listen;
  /** family of the balancer -> server leg */
  lbFamily: 4 | 6;
  toa?: { kind: number; address: string; port: number };
  config?: BackendConfig;
  /** expected observation given the balancer's address/port as the server sees it */
  expect(peer: { address: string; port: number }): Observed;
}

const mapped = (a: string) => (a.includes(':') ? a : `::ffff:${a}`);

/** The textual form inet_ntop (and so Node) prints. */
export function canonical(address: string): string {
  return net.isIPv6(address) ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
}

function peerAs(listen: Listen, peer: { address: string; port: number }) {
  return { address: listen === '::' ? mapped(peer.address) : peer.address, port: peer.port };
}

/** Shape shared by the rows below. */
function expected(listen: Listen, peer: { address: string; port: number }, o: {
  remote?: { address: string; port: number };
  nat64: Observed['nat64'];
  real?: { address: string; port: number };
  nat64Flag?: boolean;
  kind?: number;
  trusted?: boolean;
  untrusted?: boolean;
}): Observed {
  const p = peerAs(listen, peer);
  const real = o.real ?? p;
  const remote = o.remote ?? real;
  return {
    remoteAddress: remote.address,
    remotePort: remote.port,
    lookup: { address: real.address, port: real.port, source: o.real ? 'toa' : 'peer' },
    nat64: o.nat64,
    info: {
      present: !!o.real,
      nat64: !!o.nat64Flag,
      trusted: !!o.trusted,
      untrusted: !!o.untrusted,
      address: real.address,
      port: real.port,
      proxyAddress: p.address,
      proxyPort: p.port,
      optionKind: o.kind ?? 0,
    },
  };
}

const v4Client = (listen: Listen) => ({ address: listen === '::' ? mapped(CLIENT_V4) : CLIENT_V4, port: CLIENT_PORT });
const v6Client = { address: CLIENT_V6, port: CLIENT_PORT };
const toa4 = { kind: 200, address: CLIENT_V4, port: CLIENT_PORT };
const toa6 = { kind: 253, address: CLIENT_V6, port: CLIENT_PORT };

/**
 * Addresses no client can have: unspecified, loopback, multicast, limited
 * broadcast, and their v4-mapped forms. Never adopted (each class counted by
 * the backend): the connection looks like one without TOA.
 */
export const BOGUS_V4 = { unspecified: ['0.0.0.0'], loopback: ['127.0.0.1', '127.255.0.9'], multicast: ['224.0.0.1', '239.255.255.250'], broadcast: ['255.255.255.255'] };
export const BOGUS_V6 = { unspecified: ['::', '::ffff:0.0.0.0'], loopback: ['::1', '::ffff:127.0.0.1'], multicast: ['ff02::1', 'ff0e::1:2'] };

function bogusRows(): Case[] {
  return ([[BOGUS_V4, 200, 4], [BOGUS_V6, 253, 6]] as const).flatMap(([classes, kind, lbFamily]) =>
    Object.entries(classes).flatMap(([cls, list]) => list.map((address): Case => ({
      name: `bogus ${cls} client ${address} (kind ${kind}) is not adopted`,
      listen: '::', lbFamily, toa: { kind, address, port: CLIENT_PORT },
      expect: (peer) => expected('::', peer, { nat64: { code: 'EINVAL' } }),
    }))));
}

/** The behaviour table (kmod/README.md "Behaviour"). */
export const behaviourTable: Case[] = [
  {
    name: '0.0.0.0 listener, kind 200: getpeername = client, 4096 EFAULT',
    listen: '0.0.0.0', lbFamily: 4, toa: toa4,
    expect: (peer) => expected('0.0.0.0', peer, { real: v4Client('0.0.0.0'), nat64: { code: 'EFAULT' }, kind: 200 }),
  },
  {
    name: ':: dual-stack, IPv4 client via kind 200: getpeername = ::ffff:client',
    listen: '::', lbFamily: 4, toa: toa4,
    expect: (peer) => expected('::', peer, { real: v4Client('::'), nat64: { code: 'EFAULT' }, kind: 200 }),
  },
  {
    name: '0.0.0.0 listener, NAT64 kind 253: getpeername = balancer, 4096 = client',
    listen: '0.0.0.0', lbFamily: 4, toa: toa6,
    expect: (peer) => expected('0.0.0.0', peer, {
      remote: peer, real: v6Client, nat64: v6Client, nat64Flag: true, kind: 253,
    }),
  },
  {
    name: ':: dual-stack, IPv4 balancer, NAT64 kind 253: getpeername = client v6',
    listen: '::', lbFamily: 4, toa: toa6,
    expect: (peer) => expected('::', peer, { real: v6Client, nat64: v6Client, nat64Flag: true, kind: 253 }),
  },
  {
    name: ':: native IPv6, kind 253: getpeername = client v6',
    listen: '::', lbFamily: 6, toa: toa6,
    expect: (peer) => expected('::', peer, { real: v6Client, nat64: v6Client, nat64Flag: true, kind: 253 }),
  },
  {
    name: 'no option, 0.0.0.0: getpeername unchanged, 4096 EINVAL, 4097 flags 0',
    listen: '0.0.0.0', lbFamily: 4,
    expect: (peer) => expected('0.0.0.0', peer, { nat64: { code: 'EINVAL' } }),
  },
  {
    name: 'no option, :: with IPv4 balancer',
    listen: '::', lbFamily: 4,
    expect: (peer) => expected('::', peer, { nat64: { code: 'EINVAL' } }),
  },
  {
    name: 'no option, :: native IPv6',
    listen: '::', lbFamily: 6,
    expect: (peer) => expected('::', peer, { nat64: { code: 'EINVAL' } }),
  },
  {
    name: 'kind 254 (LVS/DPVS) when configured',
    listen: '0.0.0.0', lbFamily: 4, toa: { ...toa4, kind: 254 }, config: { ipv4Kinds: [254] },
    expect: (peer) => expected('0.0.0.0', peer, { real: v4Client('0.0.0.0'), nat64: { code: 'EFAULT' }, kind: 254 }),
  },
  {
    name: 'kind 200 ignored when only 254 is configured',
    listen: '0.0.0.0', lbFamily: 4, toa: toa4, config: { ipv4Kinds: [254] },
    expect: (peer) => expected('0.0.0.0', peer, { nat64: { code: 'EINVAL' } }),
  },
  {
    name: 'trusted list containing the balancer: honoured and flagged TRUSTED',
    listen: '::', lbFamily: 4, toa: toa4, config: { trusted: ['203.0.113.0/24', '2001:db8:70a::/48'] },
    expect: (peer) => expected('::', peer, { real: v4Client('::'), nat64: { code: 'EFAULT' }, kind: 200, trusted: true }),
  },
  {
    name: 'trusted list without the balancer: option ignored, flagged UNTRUSTED',
    listen: '::', lbFamily: 4, toa: toa4, config: { trusted: ['192.0.2.0/24', '2001:db8:ffff::/48'] },
    expect: (peer) => ({
      ...expected('::', peer, { nat64: { code: 'EINVAL' }, untrusted: true }),
      info: { ...expected('::', peer, { nat64: { code: 'EINVAL' }, untrusted: true }).info, optionKind: 200 },
    }),
  },
  {
    name: 'trusted IPv6 range honours a native IPv6 balancer',
    listen: '::', lbFamily: 6, toa: toa6, config: { trusted: ['192.0.2.0/24', '2001:db8:70a::/48'] },
    expect: (peer) => expected('::', peer, { real: v6Client, nat64: v6Client, nat64Flag: true, kind: 253, trusted: true }),
  },
  {
    // sshd, postgres... on the same host keep their real peers
    name: 'ports list without the listener: option ignored, getpeername = balancer',
    listen: '::', lbFamily: 4, toa: toa4, config: { ports: [1, 65535] },
    expect: (peer) => expected('::', peer, { nat64: { code: 'EINVAL' } }),
  },
  ...bogusRows(),
];

function codeOf(fn: () => { address: string; port: number }): Observed['nat64'] {
  try {
    const r = fn();
    return { address: r.address, port: r.port };
  } catch (e) {
    return { code: (e as { code?: string }).code ?? String(e) };
  }
}

/** Everything a server can learn about an accepted socket, read in the 'connection' handler. */
export function observe(socket: net.Socket): Observed {
  const l = lookup(socket);
  const i = getToaInfo(socket);
  return {
    remoteAddress: socket.remoteAddress,
    remotePort: socket.remotePort,
    lookup: { address: l.address, port: l.port, source: l.source },
    nat64: codeOf(() => getNat64Peer(socket)),
    info: {
      present: i.present, nat64: i.nat64, trusted: i.trusted, untrusted: i.untrusted,
      address: i.address, port: i.port, proxyAddress: i.proxy.address, proxyPort: i.proxy.port,
      optionKind: i.optionKind,
    },
  };
}

/** A server on `listen` that records the observation of each accepted socket. */
export async function startServer(listen: Listen) {
  const seen: Observed[] = [];
  const errors: unknown[] = [];
  const waiters: Array<() => void> = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    try {
      seen.push(observe(s));
    } catch (e) {
      errors.push(e);
    }
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.resume(); // drain what the client sends, so its FIN is seen
    s.end('ok\n');
    waiters.splice(0).forEach((w) => w());
  });
  server.listen({ host: listen, port: 0, ipv6Only: false });
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    seen,
    errors,
    /** resolves once `n` sockets have been accepted (bounded). */
    async waitFor(n: number, timeoutMs = 10000) {
      const deadline = Date.now() + timeoutMs;
      while (seen.length + errors.length < n) {
        if (Date.now() > deadline) throw new Error(`only ${seen.length + errors.length}/${n} connections accepted in ${timeoutMs} ms`);
        await new Promise<void>((r) => { waiters.push(r); setTimeout(r, 50); });
      }
      if (errors.length) throw errors[0];
    },
    /** stops listening and drops connections a client keeps half-open */
    close: () => new Promise<void>((r) => {
      server.close(() => r());
      for (const s of sockets) s.destroy();
    }),
  };
}

/** Runs one connection of a row through a load balancer emulator. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function runCase(lb: any, c: Pick<Case, 'listen' | 'lbFamily' | 'toa'>): Promise<{ seen: Observed; peer: { address: string; port: number } }> {
  const srv = await startServer(c.listen);
  try {
    const conn = await lb.connect({ port: srv.port, family: c.lbFamily, toa: c.toa, placement: 'ack' });
    await srv.waitFor(1);
    await conn.recvAll().catch(() => undefined);
    await conn.close().catch(() => undefined);
    return { seen: srv.seen[0], peer: { address: canonical(lb.balancerAddress(c.lbFamily)), port: conn.localPort } };
  } finally {
    await srv.close();
  }
}

/** The shared suite: call from a backend's test file inside a guest. */
export function behaviourSuite(backend: Backend, base: BackendConfig = {}) {
  describe(`behaviour table (${backend.name})`, () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    let lb: any;
    beforeAll(async () => {
      lb = await createLoadBalancer();
    }, 30000);
    afterAll(async () => {
      await lb?.close();
      await backend.disable();
    });
    for (const c of behaviourTable) {
      it(c.name, async () => {
        await backend.enable({ ipv4Kinds: [200], ipv6Kinds: [253], trusted: [], ports: [], ...base, ...c.config });
        const { seen, peer } = await runCase(lb, c);
        const want = c.expect(peer);
        if (backend.errno && 'code' in want.nat64) want.nat64 = { code: backend.errno(want.nat64.code) };
        expect(seen).toEqual(want);
      }, 20000);
    }
  });
}
