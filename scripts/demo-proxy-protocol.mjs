// The PROXY protocol part of `npm run demo`: an HTTP server wrapped by
// acceptProxyProtocol, reached through haproxy (send-proxy and send-proxy-v2)
// when haproxy is installed, else through node-toa's own encoder playing the
// balancer; then a v2 LOCAL health check, and a direct client forging a
// header, which is refused. Loopback only: each client binds its own
// 127.0.0.N, so the address the server prints can only come from the header.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const haproxyPath = () => {
  try { return execFileSync('sh', ['-c', 'command -v haproxy'], { stdio: 'pipe' }).toString().trim(); } catch { return undefined; }
};

async function freePort() {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  s.close();
  return port;
}

/** An HTTP GET over `socket` (already connected, header already written); resolves when answered. */
function get(socket) {
  return new Promise((resolve, reject) => {
    const req = http.request({ path: '/', createConnection: () => socket, headers: { connection: 'close' } }, (res) => { res.resume(); res.on('end', resolve); });
    req.on('error', reject);
    req.end();
  });
}

export async function proxyProtocolDemo(root, require) {
  const { lookup } = require(join(root, 'dist/cjs/index.js'));
  const { acceptProxyProtocol, encodeProxyHeader } = require(join(root, 'dist/cjs/proxy-protocol/index.js'));
  let last;
  const server = http.createServer((req, res) => {
    const s = req.socket;
    const r = lookup(s);
    last = { remoteAddress: s.remoteAddress, realRemoteAddress: s.realRemoteAddress, realRemotePort: s.realRemotePort, source: r.source, tlvs: r.tlvs };
    res.end('ok\n');
  });
  const handle = acceptProxyProtocol(server, { trusted: ['127.0.0.1/32'], mode: 'required', timeoutMs: 3000 });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = server.address().port;
  const haproxy = haproxyPath();
  const dir = mkdtempSync(join(tmpdir(), 'node-toa-demo-pp-'));
  let child;
  let base = { ...handle.counters };
  const rows = [];
  const ask = async (who, via, says, connect) => {
    last = undefined;
    const { socket, local } = await connect();
    await get(socket).catch(() => {});
    rows.push({ who, via, says: says ?? `${local.address}:${local.port}`, ...(last ?? {}) });
  };
  try {
    console.log(`\nPROXY protocol: HTTP server on 127.0.0.1:${port} with acceptProxyProtocol (trusted 127.0.0.1/32, required)`);
    if (haproxy) {
      const [v1, v2] = [await freePort(), await freePort()];
      writeFileSync(join(dir, 'haproxy.cfg'), [
        'global', '  maxconn 50', 'defaults', '  mode tcp', '  timeout connect 2s', '  timeout client 5s', '  timeout server 5s',
        `listen v1`, `  bind 127.0.0.1:${v1}`, `  server node 127.0.0.1:${port} send-proxy`,
        `listen v2`, `  bind 127.0.0.1:${v2}`, `  server node 127.0.0.1:${port} send-proxy-v2`, '',
      ].join('\n'));
      child = spawn(haproxy, ['-f', join(dir, 'haproxy.cfg'), '-db'], { stdio: 'ignore' });
      for (let i = 0; i < 100; i++) {
        const up = await new Promise((r) => { const s = net.connect(v2, '127.0.0.1', () => { s.destroy(); r(true); }); s.on('error', () => r(false)); });
        if (up) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      // the readiness probes above reach the server too: count from here
      await new Promise((r) => setTimeout(r, 200));
      base = { ...handle.counters };
      console.log(`haproxy ${execFileSync(haproxy, ['-v']).toString().split(' ')[2]} in front of it (send-proxy on :${v1}, send-proxy-v2 on :${v2}); clients bind 127.0.0.21, .22`);
      const viaHaproxy = (front, localAddress) => async () => {
        const socket = net.connect({ port: front, host: '127.0.0.1', localAddress });
        await once(socket, 'connect');
        return { socket, local: { address: socket.localAddress, port: socket.localPort } };
      };
      await ask('client via haproxy', 'send-proxy (v1)', undefined, viaHaproxy(v1, '127.0.0.21'));
      await ask('client via haproxy', 'send-proxy-v2', undefined, viaHaproxy(v2, '127.0.0.22'));
    } else {
      console.log('haproxy is not installed: node-toa\'s encoder plays the balancer (apt-get install haproxy to see the real one)');
      const viaEncoder = (version, source) => async () => {
        const socket = net.connect(port, '127.0.0.1');
        // the destination is the balancer's own front address, in the client's family
        const destination = { address: net.isIPv6(source.address) ? '2001:db8::80' : '192.0.2.80', port: 443 };
        socket.write(encodeProxyHeader({ version, source, destination }));
        await once(socket, 'connect');
        return { socket, local: source };
      };
      await ask('client via encoder', 'v1 header', undefined, viaEncoder(1, { address: '198.51.100.7', port: 51000 }));
      await ask('client via encoder', 'v2 header', undefined, viaEncoder(2, { address: '2001:db8:cafe::7', port: 52000 }));
    }
    await ask('health check (v2 LOCAL)', 'balancer itself', '-', async () => {
      const socket = net.connect(port, '127.0.0.1');
      socket.write(encodeProxyHeader({ version: 2, command: 'LOCAL' }));
      await once(socket, 'connect');
      return { socket };
    });
    await ask('direct client forging a header', 'from 127.0.0.9', '203.0.113.250:8080', async () => {
      const socket = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.9' });
      socket.on('error', () => {});
      socket.write(encodeProxyHeader({ version: 1, source: { address: '203.0.113.250', port: 8080 }, destination: { address: '127.0.0.1', port } }));
      await once(socket, 'connect');
      return { socket };
    });
  } finally {
    child?.kill('SIGTERM');
    if (child && child.exitCode === null) await once(child, 'exit');
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const head = ['client', 'via', 'header says', 'remoteAddress', 'realRemoteAddress', 'port', 'source'];
  const table = rows.map((r) => [r.who, r.via, r.says, r.remoteAddress ?? '-', r.realRemoteAddress ?? '(refused)', String(r.realRemotePort ?? '-'), r.source ?? '-']);
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((t) => t[i].length)));
  const line = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const t of table) console.log(line(t));
  const c = Object.fromEntries(Object.entries(handle.counters).map(([k, v]) => [k, v - base[k]]));
  console.log(`\ncounters: proxied=${c.proxied} local=${c.local} untrusted=${c.untrusted} malformed=${c.malformed} timeout=${c.timeout}`);
  const ok = rows.slice(0, 2).every((r) => r.source === 'proxy-protocol' && `${r.realRemoteAddress}:${r.realRemotePort}` === r.says && r.remoteAddress === '127.0.0.1')
    && rows[2].source === 'peer' && rows[2].realRemoteAddress === '127.0.0.1'
    && rows[3].realRemoteAddress === undefined && c.untrusted === 1;
  console.log(ok ? 'The server saw every client the balancer saw; the forged header was refused.' : 'UNEXPECTED: see the PROXY protocol table above.');
  return ok;
}
