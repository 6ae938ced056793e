// Load that makes hooks nest: TOA connection churn through the LB emulator's
// crafter, getpeername/getsockname storms on long-lived TOA sockets from one
// process per CPU, and interrupt/softirq load (a loopback UDP flood and an
// hrtimer sleeper) for TOA_STRESS_SECONDS (default 60) and at least
// TOA_STRESS_CONNECTIONS (default 50,000, issue #11's count) TOA handshakes.
// Then everything is closed: the table is empty, alloc == free, probe_missed
// (kretprobe and kprobe nmissed) did not move, and every connection reported
// its own client. Under TCG with the storms and the flood running a 6.12
// guest crafts ~515 TOA handshakes per second (2026-12-01: 50,000 in 97 s);
// CI runs the 50,000. TOA_STRESS_CONNECTIONS=2000 is a quick local
// run (the matrix forwards TOA_STRESS_* from its own environment).
// TOA_STRESS_LIMIT_SECONDS (default 1800) stops a slower guest, and falling
// short of the count fails.
import net from 'node:net';
import os from 'node:os';
import fs from 'node:fs';
import { once } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer, toaOption } from '../support/lb/index.mjs';
import { canonical } from '../spec/behaviour';
import { PythonLines } from '../support/python';
import { delta, insmod, kernelTrouble, loaded, rmmod, stats, tableEntries } from '../spec/kmod';

const SECONDS = Number(process.env.TOA_STRESS_SECONDS ?? 60);
const CONNECTIONS = Number(process.env.TOA_STRESS_CONNECTIONS ?? 50000);
// hard stop, whatever the guest's speed
const LIMIT_MS = Number(process.env.TOA_STRESS_LIMIT_SECONDS ?? 1800) * 1000;
const BATCH = 500;
const HELD = 16;

const STORM = String.raw`
import socket, sys, time, signal
socks = [socket.socket(fileno=fd) for fd in range(3, 3 + int(sys.argv[1]))]
end = time.time() + float(sys.argv[2]); n = 0; bad = 0
def done(*_):
    print(n, bad, flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, done)
want = sys.argv[3].split(',')
while time.time() < end:
    for i, s in enumerate(socks):
        if s.getpeername()[0] != want[i]: bad += 1
        s.getsockname(); n += 2
done()
`;
const IRQ = String.raw`
import socket, sys, time, threading
end = time.time() + float(sys.argv[1])
def sleeper():
    while time.time() < end: time.sleep(0.0002)
threading.Thread(target=sleeper, daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(('127.0.0.1', 0)); r.setblocking(False); dst = r.getsockname(); b = b'x' * 64
while time.time() < end:
    for _ in range(64): u.sendto(b, dst)
    try:
        while True: r.recv(128)
    except BlockingIOError: pass
`;

// The churn's server. Not Node's net.Server: a socket object per connection
// made the vitest worker the bottleneck under TCG (97% of a CPU at ~370
// handshakes/s on 6.12). One line per connection: the balancer's address
// and port (the key the crafter knows), getpeername's answer, and whether
// toa.ko said present.
const ACCEPTOR = String.raw`
import socket, sys
ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
ls.bind(('::', 0)); ls.listen(1024)
# poll, then accept: an accept() already asleep when the listener's first TOA
# handshake arrives gets the stock getpeername (kmod-listener-ops); seen once
# here as 1 wrong of 50,000, the first
ls.settimeout(3600)
print('[%d]' % ls.getsockname()[1], flush=True)
out = sys.stdout
while True:
    c, _ = ls.accept()
    try:
        b = c.getsockopt(socket.IPPROTO_IP, 4097, 56)  # TOA_SO_GET_INFO
        peer = c.getpeername()[0]
    except OSError:
        c.close(); continue  # reset before we looked: not counted as accepted
    fam = int.from_bytes(b[48:50], 'little')
    proxy = socket.inet_ntop(fam, b[32:36] if fam == socket.AF_INET else b[32:48])
    if fam == socket.AF_INET: proxy = '::ffff:' + proxy
    out.write('["%s|%d","%s",%d]\n' % (proxy, int.from_bytes(b[14:16], 'big'), peer, b[4] & 1))
    out.flush()
    c.close()
`;

function interrupts(): number {
  return fs.readFileSync('/proc/interrupts', 'utf8').split('\n').slice(1)
    .reduce((s, l) => s + l.trim().split(/\s+/).slice(1, 1 + os.cpus().length).reduce((a, v) => a + (Number(v) || 0), 0), 0);
}

describe(`stress: ${SECONDS} s, >= ${CONNECTIONS} TOA connections, storms and interrupt load`, () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let lb: any;
  let server: net.Server;
  let acceptor: PythonLines;
  let acceptorGone: string | undefined;
  let port = 0;
  let heldPort = 0;
  const seen = new Map<string, { remote: string; present: boolean }>();
  const held: net.Socket[] = [];
  const procs: ChildProcess[] = [];

  beforeAll(async () => {
    if (loaded()) rmmod();
    insmod({ ipv4Kinds: [200], ipv6Kinds: [253] });
    lb = await createLoadBalancer();
    // the storms' long-lived TOA sockets, handed to them as fds
    server = net.createServer((s) => { s.on('error', () => {}); held.push(s); });
    server.listen({ host: '::', port: 0, ipv6Only: false });
    await once(server, 'listening');
    heldPort = (server.address() as net.AddressInfo).port;
    acceptor = new PythonLines(ACCEPTOR, [], { name: 'acceptor' });
    [port] = await acceptor.next();
    void (async () => {
      for (;;) {
        const [key, remote, present] = await acceptor.next(LIMIT_MS).catch((e: Error) => {
          acceptorGone ??= e.message; // stopped by afterAll, or died: the test says which
          return [null];
        });
        if (key === null) return;
        seen.set(key, { remote, present: present === 1 });
      }
    })();
  }, 60000);

  afterAll(async () => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    for (const s of held) s.destroy();
    await new Promise<void>((r) => server?.close(() => r()));
    await acceptor?.stop();
    await lb?.close();
    if (loaded()) rmmod();
  });

  it('ends with an empty table, alloc == free, no probe miss and no wrong address', async () => {
    const before = stats();
    // long-lived TOA sockets for the storms (held by the server)
    const clients = [];
    for (let i = 0; i < HELD; i++) {
      clients.push(await lb.connect({ port: heldPort, family: 4, toa: { kind: 200, address: `198.51.100.${10 + i}`, port: 5000 + i } }));
    }
    const deadline = Date.now() + 10000;
    while (held.length < HELD && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(held.length).toBe(HELD);
    const want = held.map((s) => s.remoteAddress!).join(',');
    expect(want.split(',').every((a) => a.startsWith('::ffff:198.51.100.'))).toBe(true);

    const irqBefore = interrupts();
    const budget = SECONDS + 120;
    // nice 19: the storms take every CPU cycle the churn leaves (and are
    // preempted by its softirqs), instead of starving the crafter: on 6.12
    // under TCG 60 s then craft ~17,500 handshakes instead of ~6,500
    const storms = os.cpus().map(() => {
      const p = spawn('/usr/bin/nice', ['-n', '19', '/usr/bin/python3', '-c', STORM, String(HELD), String(budget), want],
        { stdio: ['ignore', 'pipe', 'inherit', ...held] as never });
      procs.push(p);
      let out = '';
      p.stdout!.on('data', (d) => { out += d; });
      return { p, out: () => out };
    });
    // nice 19 as well: at full priority the flood's busy loop could take a
    // whole CPU. 6.12 under TCG, 2026-12-01, 20,000 handshakes to a Node
    // server: 150/s, ~92,000 storm calls per CPU; niced, 369/s and ~360,000,
    // still ~1,000 interrupts/s besides the crafter's own softirqs
    const irq = spawn('/usr/bin/nice', ['-n', '19', '/usr/bin/python3', '-c', IRQ, String(budget)], { stdio: 'ignore' });
    procs.push(irq);

    const start = Date.now();
    let crafted = 0;
    let accepted = 0;
    const wrong: string[] = [];
    let b = 0;
    while ((Date.now() - start < SECONDS * 1000 || crafted < CONNECTIONS) && Date.now() - start < LIMIT_MS) {
      const v6 = b++ % 2 === 1;
      const clientsOf = Array.from({ length: BATCH }, (_, k) => (v6
        ? { kind: 253, address: `2001:db8:c1::${(k + 1).toString(16)}`, port: 1024 + k }
        : { kind: 200, address: `198.51.100.${1 + (k % 250)}`, port: 1024 + k }));
      const res = await lb.craft(clientsOf.map((c) => ({ port, ackOptions: toaOption(c), dataOptions: toaOption(c) })), { timeoutMs: 10000, window: 128 });
      crafted += BATCH;
      await new Promise((r) => setTimeout(r, 20));
      res.forEach((r: { source: { address: string; port: number } }, k: number) => {
        const key = `::ffff:${r.source.address}|${r.source.port}`;
        const rec = seen.get(key);
        if (!rec) return;
        seen.delete(key);
        accepted++;
        const exp = v6 ? canonical(clientsOf[k].address) : `::ffff:${clientsOf[k].address}`;
        if (!rec.present || rec.remote !== exp) wrong.push(`${key}: ${rec.remote} want ${exp}`);
      });
    }
    const elapsed = (Date.now() - start) / 1000;
    for (const s of storms) s.p.kill('SIGTERM');
    irq.kill('SIGTERM');
    const calls = await Promise.all(storms.map(async (s) => {
      if (s.p.exitCode === null && s.p.signalCode === null) await once(s.p, 'exit');
      return s.out();
    }));
    for (const c of clients) await c.close().catch(() => undefined);
    for (const s of held) s.destroy();
    await new Promise((r) => setTimeout(r, 1000));
    const d = delta(before, stats());
    const irqs = interrupts() - irqBefore;
    console.log(`stress on ${os.release()}: ${elapsed.toFixed(0)} s, ${crafted} crafted, ${accepted} accepted, ${wrong.length} wrong; `
      + `${irqs} interrupts; storm output ${JSON.stringify(calls)}; counters ${JSON.stringify(d)}`);
    expect(acceptorGone).toBeUndefined();
    expect(wrong.slice(0, 10)).toEqual([]);
    for (const out of calls) {
      const [n, bad] = out.trim().split(' ').map(Number);
      expect(n).toBeGreaterThan(0);
      expect(bad).toBe(0);
    }
    // the limit only bounds a slow guest's run: falling short still fails
    expect(crafted).toBeGreaterThanOrEqual(CONNECTIONS);
    expect(accepted).toBeGreaterThanOrEqual(crafted * 0.95);
    expect(elapsed).toBeGreaterThanOrEqual(SECONDS);
    expect(d.probe_missed).toBe(0);
    expect(d.entry_alloc).toBe(d.entry_free);
    expect(stats().table_entries).toBe(0);
    expect(tableEntries()).toEqual([]);
    expect(kernelTrouble()).toEqual([]);
  }, LIMIT_MS + 300_000);
});
