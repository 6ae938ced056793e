// getpeername on TOA sockets goes through toa.ko's own copy of the socket
// operations: the first TOA handshake on a listener swaps the listener's ops,
// and accept() hands them to every child (do_accept copies the listener's
// ops). So, as for any protocol module, the module is pinned while such a
// socket is open:
// - rmmod is refused (EBUSY) while a TOA listener or child is open, and
//   succeeds as soon as the last one is closed; a listener that never saw TOA
//   pins nothing;
// - listeners opened and closed while handshakes are in flight leave no
//   reference behind (rmmod succeeds afterwards, no kernel report);
// - TCP_ULP (kTLS) and IPV6_ADDRFORM would move a socket to ops that are not
//   toa.ko's while it holds the module: they are refused on these sockets and
//   counted (sockopt_refused), and still work on other sockets;
// - a thread already blocked in accept() when a listener's first TOA
//   handshake arrives got the stock ops before it slept: that one child's
//   getpeername reports the balancer, while TOA_SO_GET_INFO (what node-toa
//   reads) reports the client. Children accepted later report the client.
// All sockets under test live in one python helper, driven line by line:
// node cannot block in accept() or call these setsockopts.
import { join } from 'node:path';
import os from 'node:os';
import { readFileSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer } from '../support/lb/index.mjs';
import { CLIENT_PORT, CLIENT_V4 } from '../spec/behaviour';
import type { DoctorReport } from '../../src/doctor';
import { PythonLines } from '../support/python';
import { delta, insmod, kernelTrouble, loaded, rmmod, rmmodOnce, rmmodWithin, stats, tableEntries } from '../spec/kmod';

// stdin: one JSON command per line; stdout: one JSON answer per command.
const SOCKETS_PY = String.raw`
import socket, sys, json, errno, threading
socks, threads = {}, {}
TOA_SO_GET_INFO = 4097
def err(e): return {'err': 'EOPNOTSUPP' if e.errno == errno.EOPNOTSUPP else errno.errorcode.get(e.errno, str(e.errno))}
def info(s):
    b = s.getsockopt(socket.IPPROTO_IP, TOA_SO_GET_INFO, 56)
    flags = int.from_bytes(b[4:8], 'little')
    fam = int.from_bytes(b[10:12], 'little')
    addr = socket.inet_ntop(fam, b[16:20] if fam == socket.AF_INET else b[16:32])
    return {'present': bool(flags & 1), 'real': [addr, int.from_bytes(b[12:14], 'big')]}
def accept(ls, timeout):
    # a timeout makes python poll() first and call accept() only once a child
    # is queued: None is a real accept() asleep in the kernel
    ls.settimeout(timeout)
    c, _ = ls.accept()
    socks[c.fileno()] = c
    return {'id': c.fileno(), 'peer': list(c.getpeername()[:2]), 'info': info(c)}
def run(c):
    op = c['op']
    if op == 'listen':
        ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        ls.bind(('::', 0)); ls.listen(64)
        socks[ls.fileno()] = ls
        return {'id': ls.fileno(), 'port': ls.getsockname()[1]}
    if op == 'accept':
        return accept(socks[c['id']], 15)
    if op == 'acceptInThread':
        box = {}
        t = threading.Thread(target=lambda: box.update(accept(socks[c['id']], None)))
        t.start(); threads[c['id']] = (t, box)
        return {}
    if op == 'join':
        t, box = threads.pop(c['id']); t.join(20)
        return box
    if op == 'setsockopt':
        try:
            socks[c['id']].setsockopt(c['level'], c['name'], c['value'].encode() if isinstance(c['value'], str) else c['value'])
            return {'ok': True}
        except OSError as e: return err(e)
    if op == 'peer':
        s = socks[c['id']]
        # SO_DOMAIN: the kernel's family (python's s.family is fixed at creation)
        return {'peer': list(s.getpeername()[:2]), 'family': s.getsockopt(socket.SOL_SOCKET, 39)}
    if op == 'close':
        socks.pop(c['id']).close()
        return {}
    if op == 'closeAll':
        for s in list(socks.values()): s.close()
        socks.clear()
        return {}
for line in sys.stdin:
    try: out = run(json.loads(line))
    except Exception as e: out = {'exception': repr(e)}
    print(json.dumps(out), flush=True)
`;

/** `node-toa doctor --json`, the built CLI, as a user would run it. */
function doctor(): DoctorReport {
  const cli = join(__dirname, '../../dist/cjs/cli.js');
  const r = spawnSync(process.execPath, [cli, 'doctor', '--json'], { encoding: 'utf8', timeout: 60000 });
  return JSON.parse(r.stdout);
}

const SOL_TCP = 6;
const TCP_ULP = 31;
const SOL_IPV6 = 41;
const IPV6_ADDRFORM = 1;
const AF_INET = 2;
const MAPPED_CLIENT = `::ffff:${CLIENT_V4}`;

describe('TOA listeners use toa.ko\'s own socket operations', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let lb: any;
  let helper: PythonLines;
  beforeAll(async () => {
    if (loaded()) rmmod();
    lb = await createLoadBalancer();
    helper = new PythonLines(SOCKETS_PY, [], { name: 'socket helper' });
  }, 60000);
  afterAll(async () => {
    await helper?.stop();
    await lb?.close();
    if (loaded()) rmmod();
  });
  const cmd = (c: object) => helper.ask(c);
  const toa = { kind: 200, address: CLIENT_V4, port: CLIENT_PORT };
  // each case starts from a freshly loaded module, whatever an earlier failure left open
  async function fresh() {
    await cmd({ op: 'closeAll' });
    if (loaded()) rmmod();
    insmod();
  }

  it('rmmod is refused while a TOA listener or child is open, and succeeds at once after the last close', async () => {
    await fresh();
    // a listener that never saw TOA pins nothing
    const plain = await cmd({ op: 'listen' });
    const pc = await lb.connect({ port: plain.port, family: 4 });
    const pkid = await cmd({ op: 'accept', id: plain.id });
    expect(pkid.info.present).toBe(false);
    expect(rmmodOnce()).toMatchObject({ ok: true });
    await cmd({ op: 'close', id: pkid.id });
    await cmd({ op: 'close', id: plain.id });
    await pc.close().catch(() => undefined);

    insmod();
    const before = stats();
    const l = await cmd({ op: 'listen' });
    const c = await lb.connect({ port: l.port, family: 4, toa });
    const kid = await cmd({ op: 'accept', id: l.id });
    expect(kid.peer).toEqual([MAPPED_CLIENT, CLIENT_PORT]);
    const refused = rmmodOnce();
    expect(refused).toMatchObject({ ok: false, busy: true });
    expect(delta(before, stats()).listeners_swapped).toBe(1);
    // doctor names what holds the module: the listener and its child
    const report = doctor();
    expect(report.providers.find((p) => p.kind === 'node-toa-kmod')?.holders).toBe(2);
    expect(report.findings.map((f) => f.message)).toContainEqual(expect.stringMatching(/^2 open sockets .* hold the module: rmmod is refused/));
    await cmd({ op: 'close', id: l.id }); // the child still holds the module
    expect(rmmodOnce()).toMatchObject({ ok: false, busy: true });
    expect((await cmd({ op: 'peer', id: kid.id })).peer).toEqual([MAPPED_CLIENT, CLIENT_PORT]);
    await cmd({ op: 'close', id: kid.id });
    await c.close().catch(() => undefined);
    const ms = await rmmodWithin(1000);
    console.log(`busy: refused with "${refused.stderr}", unloaded ${ms} ms after the last close`);
    expect(ms).not.toBeNull();
    expect(kernelTrouble()).toEqual([]);
  }, 120000);

  it('listeners closed while TOA handshakes are in flight leave no module reference behind', async () => {
    const LISTENERS = 24;
    await fresh();
    const before = stats();
    let accepted = 0;
    const inflight: Promise<unknown>[] = [];
    for (let i = 0; i < LISTENERS; i++) {
      const l = await cmd({ op: 'listen' });
      const conns = Array.from({ length: 3 }, () => lb.connect({ port: l.port, family: 4, toa, timeoutMs: 3000 })
        .then((c: { close(): Promise<void> }) => c.close().catch(() => undefined), () => undefined));
      inflight.push(...conns);
      if (i % 2 === 0) {
        const kid = await cmd({ op: 'accept', id: l.id });
        expect(kid.peer).toEqual([MAPPED_CLIENT, CLIENT_PORT]);
        accepted++;
        await cmd({ op: 'close', id: l.id }); // closed with handshakes still in flight
        await cmd({ op: 'close', id: kid.id });
      } else {
        await cmd({ op: 'close', id: l.id }); // closed before or during its first handshake
      }
    }
    await Promise.all(inflight);
    await new Promise((r) => setTimeout(r, 300));
    const d = delta(before, stats());
    console.log(`churn: ${LISTENERS} listeners, ${accepted} accepted, listeners_swapped ${d.listeners_swapped}, ` +
      `entries ${d.entry_alloc} allocated / ${d.entry_free} freed`);
    expect(d.listeners_swapped).toBeGreaterThanOrEqual(accepted);
    expect(d.listeners_swapped).toBeLessThanOrEqual(LISTENERS);
    expect(d.entry_alloc).toBe(d.entry_free);
    expect(tableEntries()).toEqual([]);
    expect(await rmmodWithin(1000)).not.toBeNull();
    expect(kernelTrouble()).toEqual([]);
  }, 180000);

  it('TCP_ULP and IPV6_ADDRFORM are refused on TOA sockets, counted, and still work elsewhere', async () => {
    // Debian's 5.10 is built without CONFIG_TLS: there the kernel's own answer
    // to TCP_ULP "tls" is ENOENT. Where tls.ko exists it must load (modprobe
    // throws, failing the test).
    const release = os.release();
    const tls = ['modules.dep', 'modules.builtin'].some((f) =>
      /(^|\/)tls\.ko/m.test(readFileSync(`/lib/modules/${release}/${f}`, 'utf8')));
    if (tls) execFileSync('modprobe', ['tls']);
    await fresh();
    const before = stats();
    const l = await cmd({ op: 'listen' });
    const conns = [];
    const kids = [];
    for (let i = 0; i < 2; i++) {
      conns.push(await lb.connect({ port: l.port, family: 4, toa }));
      kids.push(await cmd({ op: 'accept', id: l.id }));
    }
    // the TOA socket is the first kTLS candidate since boot: accepting it would
    // make toa.ko's ops the template of every later kTLS socket
    const ulp = await cmd({ op: 'setsockopt', id: kids[0].id, level: SOL_TCP, name: TCP_ULP, value: 'tls' });
    const addrform = await cmd({ op: 'setsockopt', id: kids[1].id, level: SOL_IPV6, name: IPV6_ADDRFORM, value: AF_INET });
    expect({ ulp, addrform }).toEqual({ ulp: { err: 'EOPNOTSUPP' }, addrform: { err: 'EOPNOTSUPP' } });
    expect(delta(before, stats()).sockopt_refused).toBe(2);
    for (const k of kids) expect((await cmd({ op: 'peer', id: k.id })).peer).toEqual([MAPPED_CLIENT, CLIENT_PORT]);

    // the same calls on a listener that never saw TOA, module loaded
    const plain = await cmd({ op: 'listen' });
    const pkids = [];
    for (let i = 0; i < 2; i++) {
      conns.push(await lb.connect({ port: plain.port, family: 4 }));
      pkids.push(await cmd({ op: 'accept', id: plain.id }));
    }
    const pulp = await cmd({ op: 'setsockopt', id: pkids[0].id, level: SOL_TCP, name: TCP_ULP, value: 'tls' });
    const paddrform = await cmd({ op: 'setsockopt', id: pkids[1].id, level: SOL_IPV6, name: IPV6_ADDRFORM, value: AF_INET });
    expect({ pulp, paddrform }).toEqual({ pulp: tls ? { ok: true } : { err: 'ENOENT' }, paddrform: { ok: true } });
    expect((await cmd({ op: 'peer', id: pkids[1].id })).family).toBe(AF_INET);

    for (const s of [...kids, ...pkids, l, plain]) await cmd({ op: 'close', id: s.id });
    for (const c of conns) await c.close().catch(() => undefined);
    expect(await rmmodWithin(1000)).not.toBeNull();
    expect(kernelTrouble()).toEqual([]);
  }, 120000);

  it('a thread blocked in accept() before the first TOA handshake gets the stock ops for that one child', async () => {
    await fresh();
    const l = await cmd({ op: 'listen' });
    await cmd({ op: 'acceptInThread', id: l.id });
    await new Promise((r) => setTimeout(r, 200)); // let the thread block in accept()
    const c1 = await lb.connect({ port: l.port, family: 4, toa });
    const first = await cmd({ op: 'join', id: l.id });
    console.log(`blocked accept: first child ${JSON.stringify(first)}`);
    const c2 = await lb.connect({ port: l.port, family: 4, toa });
    const second = await cmd({ op: 'accept', id: l.id });
    const balancer = [`::ffff:${c1.balancer.address}`, c1.localPort];
    expect({ first: [first.peer, first.info], second: [second.peer, second.info] }).toEqual({
      first: [balancer, { present: true, real: [CLIENT_V4, CLIENT_PORT] }],
      second: [[MAPPED_CLIENT, CLIENT_PORT], { present: true, real: [CLIENT_V4, CLIENT_PORT] }],
    });
    for (const s of [first, second, l]) await cmd({ op: 'close', id: s.id });
    for (const c of [c1, c2]) await c.close().catch(() => undefined);
    expect(await rmmodWithin(1000)).not.toBeNull();
    expect(kernelTrouble()).toEqual([]);
  }, 120000);
});
