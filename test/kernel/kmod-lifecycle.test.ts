// rmmod/insmod while connections are being accepted and queried: the
// kretprobes, the sockopt registration and the table must come and go
// without an oops, a warning or a leaked entry.
import net from 'node:net';
import { once } from 'node:events';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer } from '../support/lb/index.mjs';
import { getNat64Peer, getToaInfo } from '../../src/index';
import { CLIENT_V4, CLIENT_V6 } from '../spec/behaviour';
import { insmod, kernelLog, kernelTrouble, loaded, rmmod } from '../spec/kmod';

const CYCLES = 20;

describe(`${CYCLES} rmmod/insmod cycles under connect + query load`, () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let lb: any;
  let server: net.Server;
  let port = 0;
  const sockets = new Set<net.Socket>();
  const answers = { toa: 0, plain: 0, noModule: 0, other: [] as string[] };

  beforeAll(async () => {
    if (loaded()) rmmod();
    lb = await createLoadBalancer();
    server = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
      s.end('ok\n');
    });
    server.listen({ host: '::', port: 0, ipv6Only: false });
    await once(server, 'listening');
    port = (server.address() as net.AddressInfo).port;
  }, 60000);

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server?.close(() => r()));
    await lb?.close();
    if (loaded()) rmmod();
  });

  // queries every open socket the way an application would, in a tight loop
  function queryAll() {
    for (const s of sockets) {
      const peer = (s as unknown as { _handle?: { getpeername?: (o: object) => number } })._handle;
      const out: { address?: string } = {};
      peer?.getpeername?.(out); // uncached getpeername, unlike socket.remoteAddress
      if (out.address === `::ffff:${CLIENT_V4}` || out.address === CLIENT_V6) answers.toa++;
      else if (out.address) answers.plain++;
      for (const q of [getToaInfo, getNat64Peer]) {
        try {
          q(s);
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (code === 'ENOPROTOOPT') answers.noModule++;
          else if (!['EINVAL', 'EFAULT', 'ENOTCONN', 'ERR_SOCKET_CLOSED'].includes(code ?? '')) answers.other.push(String(code));
        }
      }
    }
  }

  it('never oopses or warns, and every load/unload is logged', async () => {
    const count = (re: RegExp) => (kernelLog().match(re) ?? []).length;
    const loads = count(/toa: loaded/g);
    const unloads = count(/toa: unloaded/g);
    let stop = false;
    let connections = 0;
    const load = (async () => {
      let i = 0;
      while (!stop) {
        const batch = Array.from({ length: 8 }, () => {
          const v6 = i++ % 2 === 0;
          return lb.connect({
            port, family: 4,
            toa: v6 ? { kind: 253, address: CLIENT_V6, port: 1000 + (i % 60000) } : { kind: 200, address: CLIENT_V4, port: 1000 + (i % 60000) },
          }).then(async (c: { recvAll(): Promise<Buffer>; close(): Promise<void> }) => {
            connections++;
            await c.recvAll().catch(() => undefined);
            await c.close().catch(() => undefined);
          }, () => undefined);
        });
        queryAll();
        await Promise.all(batch);
      }
    })();
    const timer = setInterval(queryAll, 5);
    try {
      for (let c = 0; c < CYCLES; c++) {
        insmod();
        await new Promise((r) => setTimeout(r, 150));
        rmmod();
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      stop = true;
      clearInterval(timer);
      await load;
    }
    console.log(`lifecycle: ${connections} connections, answers ${JSON.stringify(answers)}`);
    expect(connections).toBeGreaterThan(CYCLES);
    expect(answers.toa).toBeGreaterThan(0); // the module did work while loaded
    expect(answers.other).toEqual([]);
    expect(count(/toa: loaded/g)).toBe(loads + CYCLES);
    expect(count(/toa: unloaded/g)).toBe(unloads + CYCLES);
    expect(kernelTrouble()).toEqual([]);
  }, 600_000);
});
