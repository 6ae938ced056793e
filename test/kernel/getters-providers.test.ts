// The getters and the accept-time capture of node-toa/register with each
// provider active (toa.ko, then the eBPF backend), clients through the LB
// emulator. Only the getters are read here (no lookup() first), so the
// address-only path is what is proven: one getpeername on :: listeners, the
// provider's query on 0.0.0.0 listeners.
import { once } from 'node:events';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '../../src/register';
import { lookup } from '../../src/index';
import { bpfBackend } from '../bpf-support';
import type { Backend } from '../spec/behaviour';
import { kmodBackend } from '../spec/kmod';
// @ts-expect-error plain ESM helper without types
import { createLoadBalancer } from '../support/lb/index.mjs';

interface Conn { localPort: number; send(d: string): Promise<number>; recvAll(): Promise<Buffer>; close(o?: { rst?: boolean }): Promise<void> }
interface Lb { balancerAddress(f: 4 | 6): string; connect(o: object): Promise<Conn>; close(): Promise<void> }

const V4 = { kind: 200, address: '198.51.100.7', port: 51000 };
const NAT64 = { kind: 253, address: '2001:db8:cafe::7', port: 52000 };

interface Read { remote?: string; real?: string; port?: number; family?: string }
const read = (s: net.Socket): Read => ({ remote: s.remoteAddress, real: s.realRemoteAddress, port: s.realRemotePort, family: s.realRemoteFamily });

/** A server whose 'connection' listener (the application's) runs `onSocket`. */
async function server(host: string, onSocket: (s: net.Socket) => void, options: net.ServerOpts = {}) {
  const srv = net.createServer(options, (s) => { s.on('error', () => {}); onSocket(s); });
  srv.listen(0, host);
  await once(srv, 'listening');
  return { port: (srv.address() as net.AddressInfo).port, close: () => new Promise((r) => srv.close(r)) };
}

function providerSuite(backend: Backend) {
  describe(backend.name, () => {
    let lb: Lb;
    beforeAll(async () => {
      lb = await createLoadBalancer();
      await backend.enable({ ipv4Kinds: [200], ipv6Kinds: [253], trusted: [`${lb.balancerAddress(4)}/32`, `${lb.balancerAddress(6)}/128`] });
    }, 60_000);
    afterAll(async () => {
      await backend.disable();
      await lb?.close();
    });

    async function through(port: number, toa: object, family: 4 | 6 = 4): Promise<Conn> {
      return lb.connect({ port, family, toa, placement: 'ack' });
    }

    it('getters alone on a :: listener: IPv4 client, NAT64 client, IPv6 client', async () => {
      const seen: Read[] = [];
      const srv = await server('::', (s) => { seen.push(read(s)); s.end(); });
      try {
        for (const [toa, family] of [[V4, 4], [NAT64, 4], [{ kind: 253, address: '2001:db8:beef::42', port: 53000 }, 6]] as const) {
          const c = await through(srv.port, toa, family);
          await c.recvAll();
          await c.close();
        }
      } finally {
        await srv.close();
      }
      expect(seen).toEqual([
        { remote: '::ffff:198.51.100.7', real: '::ffff:198.51.100.7', port: 51000, family: 'IPv6' },
        { remote: '2001:db8:cafe::7', real: '2001:db8:cafe::7', port: 52000, family: 'IPv6' },
        { remote: '2001:db8:beef::42', real: '2001:db8:beef::42', port: 53000, family: 'IPv6' },
      ]);
    });

    it('a socket destroyed synchronously in the application\'s connection listener still answers', async () => {
      const seen: Read[] = [];
      const srv = await server('::', (s) => { s.destroy(); seen.push(read(s)); });
      try {
        const c = await through(srv.port, V4);
        await c.recvAll().catch(() => undefined);
        await c.close().catch(() => undefined);
      } finally {
        await srv.close();
      }
      expect(seen).toEqual([{ remote: undefined, real: '::ffff:198.51.100.7', port: 51000, family: 'IPv6' }]);
    });

    it('a client that resets before the first read: the TOA client, not the balancer; lookup() says why it cannot tell more', async () => {
      let socket!: net.Socket;
      let accepted!: () => void;
      const acceptedOnce = new Promise<void>((resolve) => { accepted = resolve; });
      const srv = await server('::', (s) => { socket = s; accepted(); }, { pauseOnConnect: true });
      try {
        const c = await through(srv.port, NAT64);
        await acceptedOnce;
        await c.close({ rst: true });
        socket.resume();
        await new Promise((r) => socket.once('close', r));
      } finally {
        await srv.close();
      }
      expect(read(socket)).toEqual({ remote: undefined, real: '2001:db8:cafe::7', port: 52000, family: 'IPv6' });
      expect(() => lookup(socket)).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_CLOSED' }));
    });

    it('NAT64 client on a 0.0.0.0 listener: getters give the IPv6 client where remoteAddress is the balancer', async () => {
      const seen: Read[] = [];
      const srv = await server('0.0.0.0', (s) => { seen.push(read(s)); s.end(); });
      try {
        for (const toa of [NAT64, V4]) {
          const c = await through(srv.port, toa);
          await c.recvAll();
          await c.close();
        }
      } finally {
        await srv.close();
      }
      expect(seen).toEqual([
        { remote: lb.balancerAddress(4), real: '2001:db8:cafe::7', port: 52000, family: 'IPv6' },
        { remote: '198.51.100.7', real: '198.51.100.7', port: 51000, family: 'IPv4' },
      ]);
    });
  });
}

providerSuite(kmodBackend);
providerSuite(bpfBackend('getters'));
