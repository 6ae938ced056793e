// npm run demo: node-toa end to end on this machine, no setup beyond npm ci.
//
// An HTTP server using node-toa/register runs in this process. The LB
// emulator (test/support/lb) forwards clients to it the way a full-NAT load
// balancer does: the server's peer is the balancer, the client travels in a
// TOA option. The eBPF backend decodes it — attached to a cgroup this demo
// creates, never the machine's own. Finally a "direct" client that is not
// the balancer forges an option, and the trusted-range check ignores it.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import * as http from 'node:http';
import { createRequire } from 'node:module';
import { release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

// The eBPF object needs rebuilding (a fresh clone has none): make -q says so
// without building anything.
function bpfObjectStale() {
  try {
    execFileSync('make', ['-q', '-C', join(root, 'bpf')], { stdio: 'ignore' });
    return false;
  } catch {
    return true;
  }
}

function needs() {
  const missing = [];
  if (process.platform !== 'linux') missing.push(`Linux (this is ${process.platform})`);
  if (process.getuid?.() !== 0) missing.push('root (BPF, cgroups and network namespaces)');
  const [maj, min] = release().split('.').map(Number);
  if (maj < 5 || (maj === 5 && min < 10)) missing.push(`kernel 5.10+ for the eBPF backend (this is ${release()}); the kernel-module path runs in QEMU: npm run test:kernel`);
  if (!readFileSync('/proc/mounts', 'utf8').includes(' cgroup2 ')) missing.push('a cgroup v2 mount');
  const tools = [['bpftool', 'bpftool'], ['ip', 'iproute2'], ['make', 'make']];
  if (bpfObjectStale()) tools.push(['clang', 'clang'], ['llvm-strip', 'llvm']);
  for (const [tool, pkg] of tools) {
    try { execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'pipe' }); } catch { missing.push(`${tool} (apt-get install ${pkg})`); }
  }
  return missing;
}

// dist/ older than any source file (or absent). Rebuilding it when it is
// fresh would also pull it from under anything else using it meanwhile.
function distStale() {
  const built = join(root, 'dist/esm/index.js');
  if (!existsSync(built)) return true;
  const since = statSync(built).mtimeMs;
  return readdirSync(join(root, 'src'), { recursive: true }).some((f) => statSync(join(root, 'src', f)).mtimeMs > since);
}

// Only after needs(): a bare machine hears what is missing before any
// build step can die. The addon is built only when neither npm ci's
// install hook nor a prebuild provided one.
function build() {
  if (bpfObjectStale()) execFileSync('make', ['-C', join(root, 'bpf')], { stdio: 'inherit' });
  if (distStale()) execFileSync(process.execPath, [join(root, 'scripts/build-ts.mjs')], { stdio: 'inherit' });
  try {
    require('node-gyp-build')(root);
  } catch {
    execFileSync(process.execPath, [require.resolve('node-gyp/bin/node-gyp.js'), 'rebuild'], { cwd: root, stdio: 'inherit' });
  }
}

const missing = needs();
if (missing.length) {
  console.error('npm run demo needs:\n' + missing.map((m) => `  - ${m}`).join('\n') +
    '\n.ci/run installs every Debian package it uses; run as root on Debian 12 or similar.');
  process.exit(1);
}
build();

require(join(root, 'dist/cjs/register.js'));
const { lookup } = require(join(root, 'dist/cjs/index.js'));
const bpf = require(join(root, 'dist/cjs/bpf/index.js'));
const { createLoadBalancer } = await import(join(root, 'test/support/lb/index.mjs'));

const cgroupRoot = bpf.cgroup2Root();
const cgroup = join(cgroupRoot, `node-toa-demo-${process.pid}`);
const ownCgroup = join(cgroupRoot, readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::')).slice(3));
const bpffs = mkdtempSync(join(tmpdir(), 'node-toa-demo-bpffs-'));
const pinDir = join(bpffs, 'node-toa');
let lb;
let server;
let last;

async function main() {
  mkdirSync(cgroup);
  execFileSync('mount', ['-t', 'bpf', 'bpf', bpffs]);
  lb = await createLoadBalancer();
  // Trust only the balancer itself: anything else that sends TOA is a forger.
  const trusted = [`${lb.balancerAddress(4)}/32`, `${lb.balancerAddress(6)}/128`];

  const handler = (req, res) => {
    const s = req.socket;
    const r = lookup(s);
    last = { remoteAddress: s.remoteAddress, realRemoteAddress: s.realRemoteAddress, realRemotePort: s.realRemotePort, source: r.source, proxy: r.proxy, trusted: r.trusted, rejected: r.rejected };
    res.end(`${s.realRemoteAddress}\n`);
  };
  // A socket belongs to the cgroup of the process that created it, and
  // accepted sockets to their listener's: so one server before the backend
  // is attached here and one after.
  const listen = async () => {
    server?.close();
    server = http.createServer(handler);
    await new Promise((resolve) => server.listen(0, '::', resolve));
    return server.address().port;
  };
  let port = await listen();
  console.log(`HTTP server on [::] (dual-stack); balancer ${lb.balancerAddress(4)} / ${lb.balancerAddress(6)}`);

  const clients = [
    { who: 'IPv4 client via IPv4 balancer', family: 4, toa: { kind: 200, address: '198.51.100.7', port: 51000 } },
    { who: 'IPv4 client via IPv4 balancer', family: 4, toa: { kind: 200, address: '192.0.2.44', port: 40123 } },
    { who: 'NAT64: IPv6 client via IPv4 balancer', family: 4, toa: { kind: 253, address: '2001:db8:cafe::7', port: 52000 } },
    { who: 'IPv6 client via IPv6 balancer', family: 6, toa: { kind: 253, address: '2001:db8:beef::42', port: 53000 } },
    { who: 'health check from the balancer (no TOA)', family: 4, placement: 'none' },
  ];
  const request = async (c) => {
    last = undefined;
    const conn = await lb.connect({ port, family: c.family, toa: c.toa, placement: c.placement ?? 'ack' });
    await conn.send('GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n');
    await conn.recvAll();
    await conn.close();
    return last ?? {};
  };
  // Round 1, no TOA provider: what every server behind the balancer sees.
  const before = [];
  for (const c of clients) before.push((await request(c)).remoteAddress);

  await bpf.attach({ cgroup, pinDir, trusted, ipv4Kinds: [200], ipv6Kinds: [253] });
  writeFileSync(join(cgroup, 'cgroup.procs'), `${process.pid}\n`);
  port = await listen();
  console.log(`eBPF backend attached to ${cgroup}; trusted: ${trusted.join(', ')}\n`);
  const rows = [];
  for (const [i, c] of clients.entries()) {
    rows.push({ who: c.who, sent: c.toa ? `${c.toa.address}:${c.toa.port}` : '-', before: before[i], ...(await request(c)) });
  }
  // A client that reaches the server directly and forges TOA (kind 200,
  // claiming 203.0.113.250): it is not the balancer, so the option is ignored.
  const forged = Buffer.from([200, 8, 0x1f, 0x90, 203, 0, 113, 250]);
  last = undefined;
  const [res] = await lb.craft([{ port, ackOptions: forged, data: 'GET / HTTP/1.0\r\n\r\n', keepOpen: true }]);
  rows.push({ who: 'direct client forging TOA', sent: '203.0.113.250:8080', before: `::ffff:${res.source.address}`, ...(last ?? {}) });

  const head = ['client', 'TOA says', 'remoteAddress without TOA', 'realRemoteAddress', 'port', 'balancer (proxy)', 'source'];
  const table = rows.map((r) => [r.who, r.sent, r.before ?? '?', r.realRemoteAddress ?? '?', String(r.realRemotePort ?? '?'), r.proxy?.address ?? '-',
    r.source === 'toa' ? `toa${r.trusted ? ' (trusted)' : ''}` : r.rejected ? 'peer (TOA ignored: untrusted)' : r.source ?? '?']);
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((t) => t[i].length)));
  const line = (cells) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const t of table) console.log(line(t));
  const counters = (await bpf.status({ pinDir })).counters;
  console.log(`\ncounters: ${Object.entries(counters).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  const ok = rows.slice(0, 4).every((r) => r.source === 'toa' && r.realRemoteAddress?.endsWith(r.sent.slice(0, r.sent.lastIndexOf(':'))))
    && rows.every((r) => r.before !== r.realRemoteAddress || r.sent === '-' || r.rejected)
    && rows[4].realRemoteAddress === rows[4].before && rows[5].rejected === true;
  console.log(ok ? '\nThe server saw every real client; the forged option was ignored.' : '\nUNEXPECTED: see the table above.');
  return ok;
}

let ok = false;
try {
  ok = await main();
  const { proxyProtocolDemo } = await import('./demo-proxy-protocol.mjs');
  ok = (await proxyProtocolDemo(root, require)) && ok;
} catch (err) {
  console.error(`demo failed: ${err.message}${err.code ? ` (${err.code})` : ''}`);
} finally {
  server?.close();
  await lb?.close().catch(() => {});
  if (existsSync(cgroup)) {
    writeFileSync(join(ownCgroup, 'cgroup.procs'), `${process.pid}\n`);
    await bpf.detach({ pinDir }).catch(() => {});
    for (let i = 0; i < 50; i++) { try { rmdirSync(cgroup); break; } catch { await new Promise((r) => setTimeout(r, 20)); } }
  }
  try { execFileSync('umount', [bpffs], { stdio: 'pipe' }); } catch { /* not mounted */ }
  rmSync(bpffs, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
