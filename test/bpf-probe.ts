// A server in a child process, placed in a given cgroup before it creates a
// socket, that reports the raw getsockopt/getpeername ABI of every accepted
// connection. Python (Debian's /usr/bin/python3) because its socket module
// passes any level/optname/buffer size straight to the kernel, which Node
// cannot do without the addon under test.
import { PythonLines } from './support/python';

const PROBE = String.raw`
import socket, json, sys, errno, time
host, n, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
ls = socket.socket(fam, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if fam == socket.AF_INET6:
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
ls.bind((host, 0))
ls.listen(64)
def q(s, level, opt, size):
    try:
        return {'hex': s.getsockopt(level, opt, size).hex()}
    except OSError as e:
        return {'err': errno.errorcode.get(e.errno, str(e.errno))}
PASS = [('SO_TYPE', 1, 3, 4), ('SO_DOMAIN', 1, 39, 4), ('SO_PROTOCOL', 1, 38, 4),
        ('SO_REUSEADDR', 1, 2, 4), ('SO_SNDBUF_len', 1, 7, 2), ('TCP_NODELAY', 6, 1, 4),
        ('TCP_MAXSEG', 6, 2, 4), ('IP_TOS', 0, 1, 4), ('IP_TTL', 0, 2, 4), ('IP_OPTIONS', 0, 4, 40),
        ('IP_4095', 0, 4095, 64), ('IP_4098', 0, 4098, 64), ('TCP_4096', 6, 4096, 64),
        ('TCP_4097', 6, 4097, 64), ('SOL_SOCKET_4096', 1, 4096, 64)]
u = socket.socket(fam, socket.SOCK_DGRAM)
print(json.dumps({'port': ls.getsockname()[1],
    'listen4096': q(ls, 0, 4096, 20), 'listen4097': q(ls, 0, 4097, 56),
    'udp4096': q(u, 0, 4096, 20), 'udp4097': q(u, 0, 4097, 56), 'udp4096short': q(u, 0, 4096, 19)}), flush=True)
for i in range(n):
    c, _ = ls.accept()
    try:
        peer = list(c.getpeername()[:2])
    except OSError as e:
        # reset before we looked: say so instead of dying with a traceback
        print(json.dumps({'gone': errno.errorcode.get(e.errno, str(e.errno))}), flush=True)
        c.close()
        continue
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    r = {'peer': peer,
         'lookup': q(c, 0, 4096, 20), 'lookupBig': q(c, 0, 4096, 64), 'lookupShort': q(c, 0, 4096, 19),
         'info': q(c, 0, 4097, 56), 'infoShort': q(c, 0, 4097, 55), 'infoBig': q(c, 0, 4097, 128),
         'pass': {name: q(c, lvl, opt, size) for (name, lvl, opt, size) in PASS}}
    t = time.perf_counter()
    for _ in range(reps):
        c.getsockopt(6, 1)
    r['nsPerGetsockopt'] = (time.perf_counter() - t) / max(reps, 1) * 1e9
    c.close()
    print(json.dumps(r), flush=True)
`;

export type Answer = { hex: string } | { err: string };

export interface ProbeHello {
  port: number;
  listen4096: Answer; listen4097: Answer; udp4096: Answer; udp4097: Answer; udp4096short: Answer;
}

export interface ProbeConn {
  peer: [string, number];
  lookup: Answer; lookupBig: Answer; lookupShort: Answer;
  info: Answer; infoShort: Answer; infoBig: Answer;
  pass: Record<string, Answer>;
  nsPerGetsockopt: number;
}

export class Probe {
  private constructor(readonly py: PythonLines) {}

  /** Starts the probe inside `cgroup` (its own cgroup when omitted), serving `n` connections. */
  static async start(host: '0.0.0.0' | '::', n: number, { cgroup, reps = 0 }: { cgroup?: string; reps?: number } = {}) {
    const p = new Probe(new PythonLines(PROBE, [host, String(n), String(reps)], { cgroup, name: 'probe' }));
    const hello = await p.py.next(15000) as ProbeHello;
    return { probe: p, hello };
  }

  async conn(): Promise<ProbeConn> {
    const r = await this.py.next(15000) as ProbeConn | { gone: string };
    if ('gone' in r) throw new Error(`the probe accepted a connection already gone (getpeername: ${r.gone})`);
    return r;
  }

  stop(): Promise<void> {
    return this.py.stop();
  }
}

/** struct toa_info (kmod/uapi/toa.h) from the probe's hex. */
export function decodeInfo(hex: string) {
  const b = Buffer.from(hex, 'hex');
  const addr = (off: number, fam: number) => (fam === 2
    ? Array.from(b.subarray(off, off + 4)).join('.')
    : (b.subarray(off, off + 16).toString('hex').match(/.{4}/g) ?? []).map((g) => parseInt(g, 16).toString(16)).join(':'));
  const realFamily = b.readUInt16LE(10);
  const proxyFamily = b.readUInt16LE(48);
  return {
    length: b.length,
    version: b.readUInt32LE(0),
    flags: b.readUInt32LE(4),
    sockFamily: b.readUInt16LE(8),
    realFamily,
    realPort: b.readUInt16BE(12),
    proxyPort: b.readUInt16BE(14),
    realAddr: addr(16, realFamily),
    proxyAddr: addr(32, proxyFamily),
    realHex: b.subarray(16, 32).toString('hex'),
    proxyHex: b.subarray(32, 48).toString('hex'),
    proxyFamily,
    optKind: b[50],
    reserved: b.subarray(51, 56).toString('hex'),
  };
}

/** struct toa_nat64_peer */
export function decodeNat64(hex: string) {
  const b = Buffer.from(hex, 'hex');
  return {
    length: b.length,
    addrHex: b.subarray(0, 16).toString('hex'),
    port: b.readUInt16BE(16),
    padding: b.subarray(18).toString('hex'),
  };
}
