// connect(AF_UNSPEC) on an accepted TOA socket disconnects it (tcp_disconnect)
// without destroying it; the same socket can then connect elsewhere. Its new
// peer must be reported, never the old client, even when the new peer port
// equals the balancer's old source port.
import net from 'node:net';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer } from '../support/lb/index.mjs';
import { CLIENT_V4 } from '../spec/behaviour';
import { delta, insmod, kernelTrouble, loaded, rmmod, stats, tableEntries } from '../spec/kmod';

// Accepts one connection, prints its peer, disconnects it with
// connect(AF_UNSPEC), reconnects the same socket to 127.0.0.1:<the old
// balancer port> and prints the peer again.
const PY = String.raw`
import socket, ctypes, sys, json
libc = ctypes.CDLL(None, use_errno=True)
fam = socket.AF_INET6 if sys.argv[1] == '6' else socket.AF_INET
ls = socket.socket(fam, socket.SOCK_STREAM)
ls.bind(('::' if fam == socket.AF_INET6 else '0.0.0.0', 0)); ls.listen(8)
print(json.dumps({'port': ls.getsockname()[1]}), flush=True)
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

describe('connect(AF_UNSPEC) then reconnect', () => {
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
      const py = spawn('/usr/bin/python3', ['-c', PY, String(fam)], { stdio: ['pipe', 'pipe', 'inherit'] });
      const lines: string[] = [];
      let buf = '';
      py.stdout.on('data', (d) => {
        buf += d;
        const parts = buf.split('\n');
        buf = parts.pop()!;
        lines.push(...parts);
      });
      const next = async () => {
        const deadline = Date.now() + 20000;
        while (!lines.length) {
          if (Date.now() > deadline || py.exitCode !== null) throw new Error('python helper gave no answer');
          await new Promise((r) => setTimeout(r, 20));
        }
        return JSON.parse(lines.shift()!);
      };
      try {
        const { port } = await next();
        const conn = await lb.connect({ port, family: 4, toa: { kind: 200, address: CLIENT_V4, port: 4321 } });
        py.stdin.write(`${conn.localPort}\n`);
        const r = await next();
        expect(r.first[0]).toBe(fam === 6 ? `::ffff:${CLIENT_V4}` : CLIENT_V4);
        expect(r.second).toEqual([fam === 6 ? '::ffff:127.0.0.1' : '127.0.0.1', conn.localPort]);
        await conn.close().catch(() => undefined);
      } finally {
        // The helper often exits by itself after its last line: waiting
        // for an 'exit' that already fired hung the 6.1 run for 60 s.
        if (py.exitCode === null && py.signalCode === null) {
          py.kill();
          await once(py, 'exit');
        }
      }
      await new Promise((r) => setTimeout(r, 300));
      const d = delta(before, stats());
      expect(d.entry_alloc).toBe(1);
      expect(d.entry_free).toBe(1);
      expect(tableEntries()).toEqual([]);
    }, 60000);
  }

  it('leaves no trouble in the kernel log', () => {
    expect(kernelTrouble()).toEqual([]);
  });
});
