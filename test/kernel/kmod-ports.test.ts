// `ports`: the local ports where TOA is honoured (empty = every port), so
// other services on the host (sshd, postgres) keep their real peers.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer } from '../support/lb/index.mjs';
import { CLIENT_V4, CLIENT_PORT, startServer } from '../spec/behaviour';
import { delta, getParam, insmod, kernelLog, kernelTrouble, loaded, rmmod, setParam, stats } from '../spec/kmod';

describe('ports parameter', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let lb: any;
  beforeAll(async () => {
    if (loaded()) rmmod();
    lb = await createLoadBalancer();
  }, 60000);
  afterAll(async () => {
    await lb?.close();
    if (loaded()) rmmod();
  });

  async function one(listen: '0.0.0.0' | '::', setup: (port: number) => void) {
    const srv = await startServer(listen);
    try {
      setup(srv.port);
      const c = await lb.connect({ port: srv.port, family: 4, toa: { kind: 200, address: CLIENT_V4, port: CLIENT_PORT } });
      await srv.waitFor(1);
      await c.close().catch(() => undefined);
      return srv.seen[0];
    } finally {
      await srv.close();
    }
  }

  it('warns at load while trusted is empty, and not when it is set', () => {
    const warn = () => (kernelLog().match(/trusted is empty/g) ?? []).length;
    const n = warn();
    insmod();
    expect(warn()).toBe(n + 1);
    rmmod();
    insmod({ trusted: ['203.0.113.0/24'] });
    expect(warn()).toBe(n + 1);
    rmmod();
  });

  it('parses and prints the list; rejects bad ports naming them', () => {
    insmod({}, ['ports=8080,443']);
    expect(getParam('ports')).toBe('443,8080');
    for (const bad of ['0', '65536', 'http', '80,x']) expect(() => setParam('ports', bad)).toThrow(/EINVAL|Invalid argument/);
    expect(kernelLog()).toMatch(/ports: bad port "x"/);
    expect(getParam('ports')).toBe('443,8080');
    setParam('ports', '');
    expect(getParam('ports')).toBe('');
  });

  for (const listen of ['0.0.0.0', '::'] as const) {
    it(`${listen}: a listener outside the list sees the balancer, inside the list the client`, async () => {
      if (!loaded()) insmod();
      let before = stats();
      const out = await one(listen, (p) => setParam('ports', String(p === 65535 ? 1 : p + 1)));
      expect(out.info.present).toBe(false);
      expect(out.remoteAddress).toBe(out.info.proxyAddress);
      expect(delta(before, stats()).syn_recv_sock_toa).toBe(0);
      before = stats();
      const inside = await one(listen, (p) => setParam('ports', `1,${p}`));
      expect(inside.remoteAddress).toBe(listen === '::' ? `::ffff:${CLIENT_V4}` : CLIENT_V4);
      expect(delta(before, stats()).syn_recv_sock_toa).toBe(1);
      setParam('ports', '');
    }, 30000);
  }

  it('leaves no trouble in the kernel log', () => {
    expect(kernelTrouble()).toEqual([]);
  });
});
