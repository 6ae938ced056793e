// rmmod/insmod cycles while connections are being accepted and queried.
// A listener that saw TOA runs on toa.ko's own socket operations and pins the
// module until it and its children are closed (kmod-listener-ops): so each
// cycle opens a fresh listener, rmmod under load must be refused with EBUSY
// (never an oops or a warning), and must succeed within 1 s of the last close.
// The probes, the sockopt registration and the table come and go each cycle
// without a leaked entry.
import net from 'node:net';
import { once } from 'node:events';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer } from '../support/lb/index.mjs';
import { getNat64Peer, getToaInfo } from '../../src/index';
import { CLIENT_V4, CLIENT_V6 } from '../spec/behaviour';
import { insmod, kernelLog, kernelTrouble, loaded, rmmod, rmmodOnce, rmmodWithin } from '../spec/kmod';

const CYCLES = 20;

describe(`${CYCLES} rmmod/insmod cycles under connect + query load`, () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let lb: any;
  let server: net.Server;
  let port = 0;
  const sockets = new Set<net.Socket>();
  const answers = { toa: 0, plain: 0, noModule: 0, other: [] as string[] };

  async function listen() {
    server = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
      s.end('ok\n');
    });
    server.listen({ host: '::', port: 0, ipv6Only: false });
    await once(server, 'listening');
    port = (server.address() as net.AddressInfo).port;
  }

  async function closeAll() {
    const closed = new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    for (const s of sockets) s.destroy();
    await closed;
    // a socket's 'close' event follows its fd's close
    for (const t0 = Date.now(); sockets.size && Date.now() - t0 < 10000;) await new Promise((r) => setTimeout(r, 5));
  }

  beforeAll(async () => {
    if (loaded()) rmmod();
    lb = await createLoadBalancer();
  }, 60000);

  afterAll(async () => {
    await closeAll();
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

  it('refuses rmmod under load with EBUSY, unloads within 1 s of the last close, never oopses or warns', async () => {
    const count = (re: RegExp) => (kernelLog().match(re) ?? []).length;
    const loads = count(/toa: loaded/g);
    const unloads = count(/toa: unloaded/g);
    let connections = 0;
    let i = 0;
    const refusals: string[] = [];
    const unloadMs: number[] = [];
    for (let c = 0; c < CYCLES; c++) {
      insmod();
      await listen();
      let stop = false;
      const load = (async () => {
        while (!stop) {
          const batch = Array.from({ length: 8 }, () => {
            const v6 = i++ % 2 === 0;
            return lb.connect({
              port, family: 4,
              toa: v6 ? { kind: 253, address: CLIENT_V6, port: 1000 + (i % 60000) } : { kind: 200, address: CLIENT_V4, port: 1000 + (i % 60000) },
            }).then(async (conn: { recvAll(): Promise<Buffer>; close(): Promise<void> }) => {
              connections++;
              await conn.recvAll().catch(() => undefined);
              await conn.close().catch(() => undefined);
            }, () => undefined);
          });
          queryAll();
          await Promise.all(batch);
        }
      })();
      const timer = setInterval(queryAll, 5);
      try {
        // under load: at least one connection done, and 150 ms
        const started = connections;
        const t0 = Date.now();
        while (connections === started && Date.now() - t0 < 20000) await new Promise((r) => setTimeout(r, 10));
        await new Promise((r) => setTimeout(r, 150));
        const r = rmmodOnce();
        if (!r.busy) refusals.push(r.ok ? 'unloaded under load' : r.stderr);
      } finally {
        stop = true;
        clearInterval(timer);
        await load;
      }
      await closeAll();
      const took = await rmmodWithin(1000);
      if (took === null) throw new Error(`cycle ${c}: toa still in use 1 s after the last close`);
      unloadMs.push(took);
      await new Promise((r) => setTimeout(r, 50));
    }
    console.log(`lifecycle: ${connections} connections, answers ${JSON.stringify(answers)}, ` +
      `unloaded after the last close in at most ${Math.max(...unloadMs)} ms`);
    expect(refusals).toEqual([]); // every rmmod under load: EBUSY
    expect(connections).toBeGreaterThan(CYCLES);
    expect(answers.toa).toBeGreaterThan(0); // the module did work while loaded
    expect(answers.other).toEqual([]);
    expect(count(/toa: loaded/g)).toBe(loads + CYCLES);
    expect(count(/toa: unloaded/g)).toBe(unloads + CYCLES);
    expect(kernelTrouble()).toEqual([]);
  }, 600_000);
});
