// Sockets that share a TOA child's addresses must never get its answer:
// - connect(AF_UNSPEC) on an accepted TOA socket disconnects it
//   (tcp_disconnect) without destroying it; the same socket can then connect
//   elsewhere. Its new peer must be reported, never the old client, even when
//   the new peer port equals the balancer's old source port.
// - A raw IPPROTO_TCP socket is not a TCP connection. The raw sockets here are
//   as close to a TOA child as a raw socket can be: the listener is on TCP
//   port 6, the local port every raw TCP socket reports (inet_create:
//   inet_sport = htons(protocol)), each raw socket is connected to its child's
//   balancer address and port, has a socket cookie, and receives the child's
//   TOA-carrying segments. Only the socket type (and the cookie) differ.
// Both cases share one guest setup (module, LB emulator): guest time is CI time.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer } from '../support/lb/index.mjs';
import { CLIENT_PORT, CLIENT_V4, CLIENT_V6 } from '../spec/behaviour';
import { PythonLines } from '../support/python';
import { delta, insmod, kernelTrouble, loaded, rmmod, stats, tableEntries } from '../spec/kmod';

// Accepts one connection, prints its peer, disconnects it with
// connect(AF_UNSPEC), reconnects the same socket to 127.0.0.1:<the old
// balancer port> and prints the peer again.
const RECONNECT_PY = String.raw`
import socket, ctypes, sys, json
libc = ctypes.CDLL(None, use_errno=True)
fam = socket.AF_INET6 if sys.argv[1] == '6' else socket.AF_INET
ls = socket.socket(fam, socket.SOCK_STREAM)
ls.bind(('::' if fam == socket.AF_INET6 else '0.0.0.0', 0)); ls.listen(8)
print(json.dumps({'port': ls.getsockname()[1]}), flush=True)
# poll, then accept: an accept() already asleep when the listener's first TOA
# handshake arrives gets the stock getpeername (kmod-listener-ops)
ls.settimeout(20)
c, _ = ls.accept()
first = c.getpeername()
bport = int(sys.stdin.readline())
tgt = socket.socket(fam, socket.SOCK_STREAM)
tgt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tgt.bind(('::' if fam == socket.AF_INET6 else '0.0.0.0', bport)); tgt.listen(1)
unspec = (ctypes.c_ubyte * 28)()
if libc.connect(c.fileno(), unspec, 28) != 0:
    print(json.dumps({'error': ctypes.get_errno()}), flush=True); sys.exit(1)
c.connect(('::ffff:127.0.0.1' if fam == socket.AF_INET6 else '127.0.0.1', bport))
print(json.dumps({'first': first[:2], 'second': c.getpeername()[:2]}), flush=True)
`;

// stdin: "<balancer4> <port4> <balancer6> <port6>", later "done".
// Prints {"listening"}, {"raw": ...} once the raw sockets exist, then the answers.
const RAW_PY = String.raw`
import socket, sys, json, select, time, errno
SO_COOKIE = 57
def out(o): print(json.dumps(o), flush=True)
def stats():
    r = {}
    for l in open('/proc/net/toa_stats').read().split('\n')[1:]:
        f = l.split()
        if f: r[f[0]] = sum(int(v) for v in f[1:])
    return r
def cookie(s): return int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), 'little')
def query(s, opt, size):
    try: return {'ok': s.getsockopt(socket.IPPROTO_IP, opt, size).hex()}
    except OSError as e: return {'err': errno.errorcode.get(e.errno, str(e))}
def has_option(seg, kind):
    thlen = (seg[12] >> 4) * 4
    i = 20
    while i < thlen and i < len(seg):
        k = seg[i]
        if k == 0: return False
        if k == 1: i += 1; continue
        if i + 1 >= thlen or seg[i + 1] < 2: return False
        if k == kind: return True
        i += seg[i + 1]
    return False
ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('::', 6)); ls.listen(8)
out({'listening': 6})
b4, p4, b6, p6 = sys.stdin.readline().split(); p4 = int(p4); p6 = int(p6)
kids = [ls.accept()[0] for _ in range(2)]
r4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP); r4.connect((b4, p4))
r6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_TCP); r6.connect((b6, p6))
raws = {'4': (r4, p4, 200), '6': (r6, p6, 253)}
out({'raw': {f: [s.getsockname()[1], cookie(s)] for f, (s, _, _) in raws.items()}})
# wait for a TOA-carrying segment from the child's balancer port on each
# (an AF_INET raw socket reads the IP header too, an AF_INET6 one does not)
seen = {}
deadline = time.time() + 10
while len(seen) < 2 and time.time() < deadline:
    for s in select.select([r4, r6], [], [], 0.5)[0]:
        f = '4' if s is r4 else '6'
        pkt = s.recv(4096)
        seg = pkt[(pkt[0] & 15) * 4:] if f == '4' else pkt
        if int.from_bytes(seg[0:2], 'big') == raws[f][1] and has_option(seg, raws[f][2]):
            seen[f] = True
before = stats()
raw = {}
for f, (s, _, _) in raws.items():
    raw[f] = {'peer': list(s.getpeername()[:2]), 'lookup': query(s, 4096, 20), 'info': query(s, 4097, 56),
              'lookupBig': query(s, 4096, 1024), 'infoBig': query(s, 4097, 1024)}
after = stats()
kids_out = [{'peer': list(c.getpeername()[:2]), 'cookie': cookie(c), 'info': query(c, 4097, 56)} for c in kids]
out({'seen': seen, 'raw': raw, 'statsDelta': {k: after[k] - before.get(k, 0) for k in after}, 'kids': kids_out})
sys.stdin.readline()
`;

describe('sockets sharing a TOA child\'s addresses', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let lb: any;
  beforeAll(async () => {
    if (loaded()) rmmod();
    insmod();
    lb = await createLoadBalancer();
  }, 60000);
  afterAll(async () => {
    await lb?.close();
    if (loaded()) rmmod();
  });

  for (const fam of [4, 6] as const) {
    it(`${fam === 6 ? ':: dual-stack' : '0.0.0.0'}: no stale answer after reconnect`, async () => {
      const before = stats();
      const py = new PythonLines(RECONNECT_PY, [String(fam)]);
      try {
        const { port } = await py.next();
        const conn = await lb.connect({ port, family: 4, toa: { kind: 200, address: CLIENT_V4, port: 4321 } });
        py.send(`${conn.localPort}`);
        const r = await py.next();
        expect(r.first[0]).toBe(fam === 6 ? `::ffff:${CLIENT_V4}` : CLIENT_V4);
        expect(r.second).toEqual([fam === 6 ? '::ffff:127.0.0.1' : '127.0.0.1', conn.localPort]);
        await conn.close().catch(() => undefined);
      } finally {
        await py.stop();
      }
      await new Promise((r) => setTimeout(r, 300));
      const d = delta(before, stats());
      expect(d.entry_alloc).toBe(1);
      expect(d.entry_free).toBe(1);
      expect(tableEntries()).toEqual([]);
    }, 60000);
  }

  it('raw IPPROTO_TCP sockets are never answered, even with a TOA child\'s 4-tuple and its TOA segments', async () => {
    const before = stats();
    const py = new PythonLines(RAW_PY);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const conns: any[] = [];
    try {
      const { listening: port } = await py.next();
      // 'all': the data segments sent after the raw sockets exist carry TOA too
      conns.push(await lb.connect({ port, family: 4, placement: 'all', toa: { kind: 200, address: CLIENT_V4, port: CLIENT_PORT } }));
      conns.push(await lb.connect({ port, family: 6, placement: 'all', toa: { kind: 253, address: CLIENT_V6, port: CLIENT_PORT } }));
      const [c4, c6] = conns;
      py.send(`${c4.balancer.address} ${c4.localPort} ${c6.balancer.address} ${c6.localPort}`);
      const made = await py.next();
      expect([made.raw['4'][0], made.raw['6'][0]]).toEqual([6, 6]);
      for (const c of conns) await c.send('toa');
      const r = await py.next();
      expect(r.seen).toEqual({ 4: true, 6: true });

      // The children answer: the module is live for this very 4-tuple.
      const kidPeers = r.kids.map((k: { peer: unknown }) => k.peer);
      expect(kidPeers).toEqual(expect.arrayContaining([[`::ffff:${CLIENT_V4}`, CLIENT_PORT], [CLIENT_V6, CLIENT_PORT]]));
      for (const k of r.kids) expect(k.info.ok).toBeDefined();

      // The raw sockets: the kernel's own peer, no query answered, nothing
      // counted. AF_INET reaches toa.ko's handler, which must say "not a TCP
      // connection"; AF_INET6 never gets there (ipv6_getsockopt does not
      // forward SOL_IP for SOCK_RAW).
      const refused = (err: string) => ({ lookup: { err }, info: { err }, lookupBig: { err }, infoBig: { err } });
      expect({ raw: r.raw, counted: Object.entries(r.statsDelta).filter(([, v]) => v !== 0) }).toEqual({
        raw: {
          4: { peer: [c4.balancer.address, c4.localPort], ...refused('ENOTCONN') },
          6: { peer: [c6.balancer.address, c6.localPort], ...refused('ENOPROTOOPT') },
        },
        counted: [],
      });

      // The table holds the two children and nothing for the raw sockets.
      const byNumber = (a: number, b: number) => a - b;
      const cookies = tableEntries().map((l) => Number(l.split(' ')[0]));
      expect(cookies.sort(byNumber)).toEqual(r.kids.map((k: { cookie: number }) => k.cookie).sort(byNumber));
      expect(cookies).not.toContain(made.raw['4'][1]);
      expect(cookies).not.toContain(made.raw['6'][1]);
      expect(stats().table_entries).toBe(2);
      py.send('done');
    } finally {
      for (const c of conns) await c.close().catch(() => undefined);
      await py.stop();
    }
    await new Promise((r) => setTimeout(r, 300));
    const d = delta(before, stats());
    expect([d.entry_alloc, d.entry_free, d.syn_recv_sock_toa]).toEqual([2, 2, 2]);
    expect(tableEntries()).toEqual([]);
  }, 60000);

  it('leaves no trouble in the kernel log', () => {
    expect(kernelTrouble()).toEqual([]);
  });
});
