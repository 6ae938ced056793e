// Which packet the address is read from: the one that completes the
// handshake. Final ACK (also under forced SYN cookies), a data segment when
// the ACK was lost; not a SYN-only option, not an option only in later data
// (documented in kmod/README.md, "Where the option is read"). Kind 254 and
// TCP Fast Open: kmod-tfo.test.ts.
import fs from 'node:fs';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer, toaOption } from '../support/lb/index.mjs';
import { CLIENT_V4, CLIENT_PORT, startServer } from '../spec/behaviour';
import { delta, insmod, kernelTrouble, loaded, netstat, rmmod, stats } from '../spec/kmod';

const toa = { kind: 200, address: CLIENT_V4, port: CLIENT_PORT };

describe('where the option is read', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let lb: any;
  let syncookies = '';

  beforeAll(async () => {
    if (loaded()) rmmod();
    insmod();
    lb = await createLoadBalancer();
    syncookies = fs.readFileSync('/proc/sys/net/ipv4/tcp_syncookies', 'utf8').trim();
  }, 60000);

  afterAll(async () => {
    if (syncookies) fs.writeFileSync('/proc/sys/net/ipv4/tcp_syncookies', syncookies);
    await lb?.close();
    if (loaded()) rmmod();
  });

  async function viaLb(listen: '0.0.0.0' | '::', placement: string | string[]) {
    const srv = await startServer(listen);
    try {
      const c = await lb.connect({ port: srv.port, family: 4, toa, placement });
      if (placement === 'data') await c.send('hello');
      await srv.waitFor(1);
      await c.recvAll().catch(() => undefined);
      await c.close().catch(() => undefined);
      return { seen: srv.seen[0], balancer: lb.balancerAddress(4), stats: await c.stats() };
    } finally {
      await srv.close();
    }
  }

  for (const listen of ['0.0.0.0', '::'] as const) {
    const client = listen === '::' ? `::ffff:${CLIENT_V4}` : CLIENT_V4;
    const balancer = (b: string) => (listen === '::' ? `::ffff:${b}` : b);

    it(`${listen}: final ACK is decoded`, async () => {
      const { seen } = await viaLb(listen, 'ack');
      expect(seen.remoteAddress).toBe(client);
    }, 30000);

    it(`${listen}: forced SYN cookies (tcp_syncookies=2), final ACK still decoded`, async () => {
      fs.writeFileSync('/proc/sys/net/ipv4/tcp_syncookies', '2');
      try {
        const recv = netstat('SyncookiesRecv');
        const { seen } = await viaLb(listen, 'ack');
        expect(netstat('SyncookiesRecv')).toBeGreaterThan(recv); // really the cookie path
        expect(seen.remoteAddress).toBe(client);
        expect(seen.info.present).toBe(true);
      } finally {
        fs.writeFileSync('/proc/sys/net/ipv4/tcp_syncookies', syncookies);
      }
    }, 30000);

    it(`${listen}: option only in the SYN is not used (documented)`, async () => {
      const before = stats();
      const { seen, stats: lbStats } = await viaLb(listen, 'syn');
      expect(lbStats.syn).toBeGreaterThan(0); // the balancer did put it in the SYN
      expect(seen.remoteAddress).toBe(balancer(seen.info.proxyAddress.replace(/^::ffff:/, '')));
      expect(seen.info.present).toBe(false);
      expect(delta(before, stats()).syn_recv_sock_no_toa).toBe(1);
    }, 30000);

    it(`${listen}: option only in data after the handshake is not used (documented)`, async () => {
      const { seen, stats: lbStats } = await viaLb(listen, 'data');
      expect(lbStats.ack).toBe(0);
      expect(seen.info.present).toBe(false);
    }, 30000);
  }

  it('a data segment that completes the handshake (final ACK lost) is decoded', async () => {
    const srv = await startServer('0.0.0.0');
    try {
      const opt = toaOption(toa);
      const [r] = await lb.craft([{ port: srv.port, noAck: true, dataOptions: opt, data: 'GET\n' }], { timeoutMs: 5000 });
      expect(r.synAck).toBe(true);
      await srv.waitFor(1);
      expect(srv.seen[0].remoteAddress).toBe(CLIENT_V4);
      expect(srv.seen[0].info.proxyAddress).toBe(r.source.address);
    } finally {
      await srv.close();
    }
  }, 30000);

  it('leaves no trouble in the kernel log', () => {
    expect(kernelTrouble()).toEqual([]);
  });
});
