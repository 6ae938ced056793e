// Load-balancer emulator: makes ordinary TCP connections arrive at a server in
// this process's network namespace as if a full-NAT balancer had forwarded
// them (peer = the balancer's 203.0.113.x / 2001:db8:70a:x::2, real client only
// in a TOA option), and crafts raw handshakes with arbitrary option bytes.
// API and topology: README.md beside this file.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const projectRoot = path.resolve(here, '../../..');

export const PLACEMENT = Object.freeze({ none: 0, syn: 1, ack: 2, data: 4, all: 8 });

const LOCK_DIR = '/run/toa-lb';
const MAX_INSTANCES = 16; // 203.0.113.0/24 split into /28 blocks
const V6_PREFIX = '2001:db8:70a';

export class LbError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

function run(cmd, args, input) {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8' });
  if (r.error) throw new LbError('ESPAWN', `${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new LbError('ECMD', `${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}\n${input ?? ''}`);
  }
  return r.stdout;
}

/**
 * Compiles the sockops object and the helper into <root>/.cache/lb/<hash>/
 * (content-addressed, so the guest reuses what the host built and parallel
 * builders never see half-written files).
 */
export function build({ cacheDir = process.env.TOA_CACHE ?? path.join(projectRoot, '.cache'), arch = process.arch, arm64Sysroot } = {}) {
  const bpfSrc = path.join(here, 'lb_sockops.bpf.c');
  const cSrc = path.join(here, 'lb-helper.c');
  const hash = createHash('sha256');
  for (const f of [bpfSrc, cSrc]) hash.update(fs.readFileSync(f));
  // the helper of an arm64 guest is cross-built on the host (its own folder)
  const dir = path.join(cacheDir, 'lb', hash.digest('hex').slice(0, 16) + (arch === 'x64' ? '' : `-${arch}`));
  const out = { bpfObj: path.join(dir, 'lb_sockops.bpf.o'), helper: path.join(dir, 'lb-helper') };
  if (fs.existsSync(out.bpfObj) && fs.existsSync(out.helper)) return out;
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `.tmp-${process.pid}`;
  const multiarch = execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim();
  run('clang', ['-O2', '-g', '-target', 'bpf', `-I/usr/include/${multiarch}`, '-Wall',
    '-c', bpfSrc, '-o', out.bpfObj + tmp]);
  if (arch === process.arch) run('gcc', ['-O2', '-Wall', '-Wextra', '-o', out.helper + tmp, cSrc, '-lbpf']);
  else if (arch === 'arm64' && arm64Sysroot) {
    // static: the guest's root need not carry (or match) these libraries
    const lib = path.join(arm64Sysroot, 'usr/lib/aarch64-linux-gnu');
    run('aarch64-linux-gnu-gcc', ['-O2', '-Wall', '-Wextra', '-static', '-idirafter', path.join(arm64Sysroot, 'usr/include'),
      '-o', out.helper + tmp, cSrc, `-L${lib}`, '-lbpf', '-lelf', '-lz', '-lzstd']);
  } else throw new LbError('ENOPREREQ', `no ${arch} build of lb-helper in ${dir} (the harness cross-builds it before the guest boots)`);
  fs.renameSync(out.bpfObj + tmp, out.bpfObj);
  fs.renameSync(out.helper + tmp, out.helper);
  return out;
}

/** The first cgroup2 mount in /proc/mounts (hybrid hosts mount it at .../unified). */
export function cgroup2Root() {
  for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mnt, type] = line.split(' ');
    if (type === 'cgroup2') return mnt.replace(/\\040/g, ' ');
  }
  throw new LbError('ENOCGROUP2', 'no cgroup2 filesystem in /proc/mounts');
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

// Locks live in /run so they vanish on reboot; a lock whose owner died is taken over.
function allocateIndex() {
  fs.mkdirSync(LOCK_DIR, { recursive: true });
  sweepDeadCgroups();
  for (let i = 0; i < MAX_INSTANCES; i++) {
    const file = path.join(LOCK_DIR, `${i}.lock`);
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      return i;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      const owner = Number(fs.readFileSync(file, 'utf8'));
      if (!pidAlive(owner)) {
        cleanupInstance(i, owner);
        fs.rmSync(file, { force: true });
        i--; // retry this slot; a racing process may still win it
      }
    }
  }
  throw new LbError('EBUSY', `all ${MAX_INSTANCES} emulator slots in ${LOCK_DIR} are in use`);
}

// Cgroups of emulators whose process was killed before close() (empty by
// then: their helper died with the parent).
function sweepDeadCgroups() {
  const root = cgroup2Root();
  for (const name of fs.readdirSync(root)) {
    const m = /^toa-lb-(\d+)-\d+$/.exec(name);
    if (m && !pidAlive(Number(m[1]))) {
      try { fs.rmdirSync(path.join(root, name)); } catch { /* still draining; next sweep */ }
    }
  }
}

function cgroupDir(index, pid) {
  return path.join(cgroup2Root(), `toa-lb-${pid}-${index}`);
}

// Best effort and synchronous, so it also works from an 'exit' handler.
function cleanupInstance(index, pid, helperPid) {
  if (helperPid && pidAlive(helperPid)) {
    try { process.kill(helperPid, 'SIGKILL'); } catch { /* already gone */ }
  }
  spawnSync('ip', ['link', 'del', `toalb${index}`], { stdio: 'ignore' });
  const dir = cgroupDir(index, pid);
  // rmdir fails with EBUSY until the killed helper is reaped by the kernel
  for (let i = 0; i < 200 && fs.existsSync(dir); i++) {
    try { fs.rmdirSync(dir); } catch (e) {
      if (e.code !== 'EBUSY') break;
      spawnSync('sleep', ['0.01']);
    }
  }
}

function hex(buf) {
  return buf && buf.length ? Buffer.from(buf).toString('hex') : '-';
}

function toBuffer(data) {
  if (data === undefined || data === null) return undefined;
  return Buffer.isBuffer(data) ? data : typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
}

/**
 * A TOA option as balancers write it: kind, len, port (network order), address.
 * IPv4 address -> len 8, IPv6 -> len 20. `len` overrides the length byte only.
 */
export function toaOption({ kind = 200, address, port, len }) {
  const family = net.isIP(address);
  if (!family) throw new LbError('EINVAL', `toaOption: not an IP address: ${address}`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new LbError('EINVAL', `toaOption: bad port ${port}`);
  const addr = family === 4 ? Buffer.from(address.split('.').map(Number)) : ipv6Bytes(address);
  const opt = Buffer.alloc(4 + addr.length);
  opt[0] = kind;
  opt[1] = len ?? opt.length;
  opt.writeUInt16BE(port, 2);
  addr.copy(opt, 4);
  return opt;
}

export function ipv6Bytes(address) {
  let [head, tail] = address.split('::');
  const part = (s) => (s ? s.split(':') : []);
  let groups = part(head);
  let rest = tail === undefined ? [] : part(tail);
  const last = (rest.length ? rest : groups).at(-1);
  const v4 = last && last.includes('.') ? last.split('.').map(Number) : null;
  if (v4) {
    (rest.length ? rest : groups).pop();
    (rest.length || tail !== undefined ? rest : groups).push(
      ((v4[0] << 8) | v4[1]).toString(16), ((v4[2] << 8) | v4[3]).toString(16));
  }
  const fill = tail === undefined ? [] : Array(8 - groups.length - rest.length).fill('0');
  const all = [...groups, ...fill, ...rest];
  if (all.length !== 8) throw new LbError('EINVAL', `bad IPv6 address ${address}`);
  const b = Buffer.alloc(16);
  all.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

function placementMask(p) {
  if (p === undefined) return PLACEMENT.ack;
  if (typeof p === 'number') return p;
  const list = Array.isArray(p) ? p : [p];
  let mask = 0;
  for (const name of list) {
    if (!(name in PLACEMENT)) throw new LbError('EINVAL', `unknown placement ${name}`);
    mask |= PLACEMENT[name];
  }
  return mask;
}

class Helper {
  constructor(proc) {
    this.proc = proc;
    this.waiters = [];
    this.stderr = '';
    proc.stderr.on('data', (d) => { this.stderr += d; });
    // a dead helper is reported through the exit handler below, not as EPIPE
    proc.stdin.on('error', () => {});
    this.lines = createInterface({ input: proc.stdout });
    this.lines.on('line', (line) => {
      const w = this.waiters[0];
      if (!w) return;
      if (line.startsWith('r ')) {
        w.rows.push(line);
        return;
      }
      this.waiters.shift();
      if (line.startsWith('ok')) w.resolve({ value: line.slice(3), rows: w.rows });
      else {
        const [, code, ...msg] = line.split(' ');
        w.reject(new LbError(code ?? 'EHELPER', msg.join(' ') || line));
      }
    });
    this.exited = new Promise((resolve) => proc.on('exit', (code, sig) => {
      this.dead = true;
      for (const w of this.waiters.splice(0)) {
        w.reject(new LbError('EHELPER', `lb-helper exited (${code ?? sig}): ${this.stderr.trim()}`));
      }
      resolve();
    }));
  }

  command(line, payload = '') {
    if (this.dead) return Promise.reject(new LbError('EHELPER', `lb-helper is gone: ${this.stderr.trim()}`));
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject, rows: [] });
      this.proc.stdin.write(`${line}\n${payload}`);
    });
  }
}

/** Parses `ready PID` from the helper, or fails with what it printed. */
function waitReady(proc, timeoutMs) {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new LbError('ETIMEDOUT', `lb-helper not ready after ${timeoutMs} ms: ${err}`)), timeoutMs);
    const onData = (d) => {
      out += d;
      const m = /^ready (\d+)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.stdout.off('data', onData);
        proc.stderr.off('data', onErr);
        resolve(Number(m[1]));
      }
    };
    const onErr = (d) => { err += d; };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onErr);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new LbError('EHELPER', `lb-helper failed to start (exit ${code}): ${err.trim()}`));
    });
  });
}

export class ClientConnection {
  constructor(lb, cid, localPort, family) {
    this.lb = lb;
    this.cid = cid;
    this.localPort = localPort;
    this.family = family;
    /** What the server sees as the peer. */
    this.balancer = { address: lb.balancerAddress(family), port: localPort };
  }

  async send(data) {
    const r = await this.lb.helper.command(`send ${this.cid} ${hex(toBuffer(data))}`);
    return Number(r.value);
  }

  /** Resolves with the next chunk the server sent, or null on EOF. */
  async recv({ max = 65536, timeoutMs = 5000 } = {}) {
    const r = await this.lb.helper.command(`recv ${this.cid} ${max} ${timeoutMs}`);
    return r.value === '-' ? null : Buffer.from(r.value, 'hex');
  }

  /** Reads until EOF (server closed), bounded by timeoutMs per read. */
  async recvAll({ timeoutMs = 5000 } = {}) {
    const chunks = [];
    for (let chunk; (chunk = await this.recv({ timeoutMs })) !== null;) chunks.push(chunk);
    return Buffer.concat(chunks);
  }

  async close({ rst = false } = {}) {
    await this.lb.helper.command(`close ${this.cid} ${rst ? 'rst' : 'fin'}`);
  }

  /** How many segments of each type carried the option, and the last BPF error. */
  async stats() {
    const r = await this.lb.helper.command(`stats ${this.localPort}`);
    const [syn, ack, data, lastError] = r.value.split(' ').map(Number);
    return { syn, ack, data, lastError };
  }
}

export class LoadBalancer {
  constructor(index, helper, helperPid, cgroup) {
    this.index = index;
    this.helper = helper;
    this.helperPid = helperPid;
    this.cgroup = cgroup;
    this.hostIface = `toalb${index}`;
    this.nextPort = 30000;
    this.craftSeq = 0;
    this.closed = false;
    const base = index * 16;
    this.v4 = { server: `203.0.113.${base + 1}`, balancer: `203.0.113.${base + 2}`, craftNet: `203.0.113.${base + 8}/29`, craftFirst: base + 9 };
    // canonical (RFC 5952) forms: what remoteAddress and tcpdump print
    const v6 = (a) => new URL(`http://[${a}]`).hostname.slice(1, -1);
    this.v6 = { server: v6(`${V6_PREFIX}:${index}::1`), balancer: v6(`${V6_PREFIX}:${index}::2`), craftNet: `${V6_PREFIX}:${index}:1::/80` };
    this.tun = null;
  }

  /** Address the server must be reachable on (it listens on 0.0.0.0 / :: or this). */
  serverAddress(family = 4) {
    return family === 6 || family === 'IPv6' ? this.v6.server : this.v4.server;
  }

  /** The peer address the server sees for emulated connections. */
  balancerAddress(family = 4) {
    return family === 6 || family === 'IPv6' ? this.v6.balancer : this.v4.balancer;
  }

  /** Source addresses the crafter may use (all routed to the TUN). */
  craftAddresses(family = 4) {
    if (family === 6 || family === 'IPv6') return [1, 2, 3, 4, 5, 6].map((n) => new URL(`http://[${V6_PREFIX}:${this.index}:1::${n}]`).hostname.slice(1, -1));
    return [0, 1, 2, 3, 4, 5].map((n) => `203.0.113.${this.v4.craftFirst + n}`);
  }

  netnsPath() {
    return `/proc/${this.helperPid}/ns/net`;
  }

  /** Runs `ip -batch -` inside the emulator's namespace. */
  nsIp(lines) {
    return run('nsenter', [`--net=${this.netnsPath()}`, 'ip', '-batch', '-'], lines.join('\n') + '\n');
  }

  allocPort() {
    const p = this.nextPort;
    this.nextPort = p >= 60999 ? 30000 : p + 1;
    return p;
  }

  /**
   * Opens a connection from the balancer's address to the server, carrying
   * `option` (a Buffer, or toaOption() fields) in the segments named by
   * `placement` ('syn' | 'ack' | 'data' | 'all' | 'none', or an array).
   */
  async connect({ port, family, host, option, toa, placement, timeoutMs = 5000, fastOpen = false, data }) {
    if (!Number.isInteger(port)) throw new LbError('EINVAL', 'connect: server port required');
    const fam = family ?? (host && net.isIP(host) === 6 ? 6 : 4);
    const opt = option !== undefined ? toBuffer(option) : toa ? toaOption(toa) : undefined;
    if (opt && (opt.length < 2 || opt.length > 40)) throw new LbError('EINVAL', `option must be 2..40 bytes, got ${opt.length}`);
    const mask = opt ? placementMask(placement) : 0;
    const localPort = this.allocPort();
    const dst = host ?? this.serverAddress(fam);
    const fo = fastOpen ? ` fastopen ${hex(toBuffer(data))}` : '';
    if (!fastOpen && data !== undefined) throw new LbError('EINVAL', 'connect: data needs fastOpen (else use send())');
    const r = await this.helper.command(
      `connect ${dst} ${port} ${this.balancerAddress(fam)} ${localPort} ${mask} ${hex(opt)} ${timeoutMs}${fo}`);
    const [cid, synData] = r.value.split(' ').map(Number);
    const conn = new ClientConnection(this, cid, localPort, fam);
    if (fastOpen) conn.synDataAcked = synData === 1;
    return conn;
  }

  /**
   * Reads (and with `value`, writes) a net.* sysctl of the emulator's netns,
   * the client side's (e.g. 'net/ipv4/tcp_fastopen'). Resolves with the old value.
   */
  async sysctl(name, value) {
    const r = await this.helper.command(`sysctl ${name}${value === undefined ? '' : ` ${value}`}`);
    return r.value;
  }

  /** A counter of /proc/net/netstat in the emulator's netns (e.g. 'TCPFastOpenActive'). */
  netstat(name) {
    const lines = fs.readFileSync(`/proc/${this.helperPid}/net/netstat`, 'utf8').split('\n');
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const k = lines[i].split(/\s+/).indexOf(name);
      if (k > 0) return Number(lines[i + 1].split(/\s+/)[k]);
    }
    throw new LbError('ENOENT', `no ${name} in the emulator's /proc/net/netstat`);
  }

  async ensureTun() {
    if (this.tun) return this.tun;
    const r = await this.helper.command('tun');
    const ifname = r.value;
    this.nsIp([
      `link set ${ifname} up`,
      `route add ${this.v4.craftNet} dev ${ifname}`,
      `route add ${this.v6.craftNet} dev ${ifname}`,
    ]);
    this.tun = ifname;
    return ifname;
  }

  /**
   * Crafts raw handshakes through the TUN. Each spec:
   *   { port, family?: 4|6, synOptions?, ackOptions?, dataOptions?, data?,
   *     noAck?, noMss?, keepOpen?, dataFin?, source?: {address, port} }
   * Options are raw bytes (Buffer/hex string), padded with EOL to 4 bytes.
   * Resolves with one result per spec, in order.
   */
  async craft(specs, { timeoutMs = 3000, window = 64 } = {}) {
    await this.ensureTun();
    const v4 = this.craftAddresses(4);
    const v6 = this.craftAddresses(6);
    const lines = specs.map((s, i) => {
      const fam = s.family === 6 || s.family === 'IPv6' ? 6 : 4;
      let src = s.source;
      if (!src) {
        // rotate through every (address, port) pair so a server-side TIME_WAIT is never hit
        const n = this.craftSeq++;
        const addrs = fam === 6 ? v6 : v4;
        src = { address: addrs[Math.floor(n / 64000) % addrs.length], port: 1024 + (n % 64000) };
      }
      s.__src = src;
      const bytes = (b) => (b === undefined || b === null ? '-' : hex(Buffer.isBuffer(b) ? b : Buffer.from(b, 'hex')));
      const data = s.data === undefined ? Buffer.from(`#${i}\n`) : toBuffer(s.data);
      const flags = [s.noAck && 'noack', s.noMss && 'nomss', s.keepOpen && 'keep', s.dataFin && 'datafin'].filter(Boolean).join(',') || '-';
      return `${src.address} ${src.port} ${this.serverAddress(fam)} ${s.port} ${bytes(s.synOptions)} ${bytes(s.ackOptions)} ${bytes(s.dataOptions)} ${hex(data)} ${flags}`;
    });
    const r = await this.helper.command(`craft ${specs.length} ${timeoutMs} ${window}`, lines.join('\n') + (lines.length ? '\n' : ''));
    const results = new Array(specs.length);
    for (const row of r.rows) {
      const [, idx, synack, acked, sent, fin, rst, timeout, ms, resent, reply] = row.split(' ');
      const i = Number(idx);
      const replyBuf = reply === '-' ? Buffer.alloc(0) : Buffer.from(reply, 'hex');
      results[i] = {
        index: i,
        source: specs[i].__src,
        synAck: synack === '1',
        ackedBytes: Number(acked),
        sentBytes: Number(sent),
        serverFin: fin === '1',
        rst: rst === '1',
        timedOut: timeout === '1',
        // the server never took any segment after the SYN and retransmitted
        // its SYN-ACK; a bare ACK then completed the handshake
        segmentsDropped: resent === '1',
        ms: Number(ms),
        reply: replyBuf,
        // only an established server socket acknowledges data/FIN or sends data
        connected: Number(acked) > 0 || replyBuf.length > 0 || fin === '1',
      };
      delete specs[i].__src;
    }
    return results;
  }

  /** Starts tcpdump on the server-side veth (or `iface`); see capture.mjs. */
  async capture(opts = {}) {
    const { startCapture } = await import('./capture.mjs');
    return startCapture({ iface: this.hostIface, ...opts });
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    process.off('exit', this.exitHandler);
    if (!this.helper.dead) {
      this.helper.proc.stdin.end('quit\n');
      const timer = setTimeout(() => this.helper.proc.kill('SIGKILL'), 2000);
      await this.helper.exited;
      clearTimeout(timer);
    }
    cleanupInstance(this.index, process.pid, this.helperPid);
    fs.rmSync(path.join(LOCK_DIR, `${this.index}.lock`), { force: true });
  }
}

/**
 * Creates the emulator: cgroup + helper in a fresh netns + veth to this
 * namespace, sockops program attached. Everything is torn down by close(),
 * by process exit, or (for the netns, veth and TUN) by the helper's death.
 */
export async function createLoadBalancer({ startTimeoutMs = 20000 } = {}) {
  if (process.getuid?.() !== 0) throw new LbError('EPERM', 'the LB emulator needs root (netns, cgroup, BPF)');
  const { bpfObj, helper: helperBin } = build();
  const index = allocateIndex();
  const cg = cgroupDir(index, process.pid);
  let proc;
  let helperPid;
  try {
    fs.mkdirSync(cg);
    proc = spawn(helperBin, [cg, bpfObj], { stdio: ['pipe', 'pipe', 'pipe'] });
    helperPid = await waitReady(proc, startTimeoutMs);
    const helper = new Helper(proc);
    const lb = new LoadBalancer(index, helper, helperPid, cg);
    const iface = lb.hostIface;
    run('ip', ['-batch', '-'], [
      `link add ${iface} type veth peer name lb0 netns ${helperPid}`,
      `addr add ${lb.v4.server}/30 dev ${iface}`,
      `addr add ${lb.v6.server}/64 dev ${iface} nodad`,
      `link set ${iface} up`,
      `route add ${lb.v4.craftNet} via ${lb.v4.balancer} dev ${iface}`,
      `route add ${lb.v6.craftNet} via ${lb.v6.balancer} dev ${iface}`,
    ].join('\n') + '\n');
    lb.nsIp([
      'link set lo up',
      `addr add ${lb.v4.balancer}/30 dev lb0`,
      `addr add ${lb.v6.balancer}/64 dev lb0 nodad`,
      'link set lb0 up',
    ]);
    // Static neighbours: neighbour discovery would drop all but the first
    // few packets of a burst of crafted handshakes (and cost a 1 s SYN-ACK
    // retransmit each).
    const mac = (out) => JSON.parse(out)[0].address;
    const hostMac = mac(run('ip', ['-j', 'link', 'show', iface]));
    const nsMac = mac(run('nsenter', [`--net=${lb.netnsPath()}`, 'ip', '-j', 'link', 'show', 'lb0']));
    run('ip', ['-batch', '-'], [lb.v4.balancer, lb.v6.balancer]
      .map((a) => `neigh replace ${a} lladdr ${nsMac} dev ${iface} nud permanent`).join('\n') + '\n');
    lb.nsIp([lb.v4.server, lb.v6.server].map((a) => `neigh replace ${a} lladdr ${hostMac} dev lb0 nud permanent`));
    lb.exitHandler = () => cleanupInstance(index, process.pid, helperPid);
    process.on('exit', lb.exitHandler);
    return lb;
  } catch (e) {
    if (proc && proc.exitCode === null) proc.kill('SIGKILL');
    cleanupInstance(index, process.pid, helperPid);
    fs.rmSync(path.join(LOCK_DIR, `${index}.lock`), { force: true });
    throw e;
  }
}
