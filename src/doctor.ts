// `node-toa doctor`: the vendor guides' troubleshooting steps, automated.
// Gathers facts (kernel, providers, configuration, counters, listeners, a
// live self-test of the addon), then turns them into findings and a verdict.
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import * as net from 'node:net';
import { release } from 'node:os';
import { getToaInfo } from './raw';
import { lookup } from './lookup';

export type ProviderKind = 'node-toa-kmod' | 'node-toa-bpf' | 'other-kmod';

export interface Provider {
  kind: ProviderKind;
  detail: string;
  ipv4Kinds?: number[];
  ipv6Kinds?: number[];
  trusted?: string[];
  /** local ports where TOA is honoured (kmod `ports`); empty = every port */
  ports?: number[];
  /** counters summed over CPUs */
  counters?: Record<string, number>;
  /** cgroups the eBPF programs are attached to */
  cgroups?: string[];
  /** kmod: module references (/sys/module/toa/refcnt): open TOA listeners and the sockets accepted from them */
  holders?: number;
}

export interface Listener { address: string; port: number; dualStack: boolean; process?: string }

export interface Finding { level: 'ok' | 'warn' | 'fail'; message: string; next?: string }

export interface DoctorReport {
  kernel: string;
  platform: NodeJS.Platform;
  providers: Provider[];
  /** what the addon got from a loopback connection made by this process */
  selfTest: { extendedQuery: 'answered' | string; source?: string };
  listeners: Listener[];
  findings: Finding[];
  verdict: 'ok' | 'warn' | 'fail';
}

export const COUNTER_MEANINGS: Record<string, string> = {
  syn_recv_sock_toa: 'connections whose handshake carried a TOA option that was adopted',
  syn_recv_sock_no_toa: 'connections without a usable TOA option (direct clients, or the balancer does not send TOA)',
  getname_toa_ok: 'getpeername calls answered with the client address',
  getname_toa_mismatch: 'getsockopt 4096 (NAT64 lookup) calls refused with EFAULT: the socket has a TOA, but an IPv4 client (getpeername or 4097 give it)',
  getname_toa_empty: 'getsockopt 4096 (NAT64 lookup) calls refused with EINVAL: the socket has no TOA',
  ip6_address_alloc: 'IPv6 (NAT64) entries stored',
  ip6_address_free: 'IPv6 (NAT64) entries freed (equals alloc once those connections closed)',
  entry_alloc: 'per-socket entries stored',
  entry_free: 'per-socket entries freed',
  entry_alloc_fail: 'entries that could not be stored (memory pressure): those clients show the balancer address',
  untrusted: 'options ignored because their source is not in the trusted ranges (spoofing attempts or a missing range)',
  malformed: 'options with a matching kind but a wrong length or a TFO cookie: ignored',
  bogus_unspecified: 'trusted options naming 0.0.0.0 / :: (or ::ffff:0.0.0.0): never adopted',
  bogus_loopback: 'trusted options naming a loopback address (127/8, ::1, ::ffff:127/104): never adopted',
  bogus_multicast: 'trusted options naming a multicast address (224/4, ff00::/8): never adopted',
  bogus_broadcast: 'trusted options naming 255.255.255.255: never adopted',
  port_skipped: 'handshakes on local ports outside the `ports` list: TOA not looked at (those services see the balancer)',
  not_linear: 'handshake packets whose TCP header was not readable in place: options not inspected',
  table_entries: 'entries currently stored',
  listeners_swapped: 'listeners moved to the module\'s own socket operations at their first TOA handshake: each pins the module (rmmod: "in use") until closed',
  swap_foreign_ops: 'TOA handshakes on listeners whose socket operations belong to something else (kTLS, another module): getpeername there shows the balancer, the getsockopt queries answer',
  sockopt_refused: 'TCP_ULP (kTLS) or IPV6_ADDRFORM refused on a TOA socket',
  probe_missed: 'kprobe hits the kernel could not run the module for (too many at once)',
};

const read = (path: string): string | undefined => {
  try { return readFileSync(path, 'utf8'); } catch { return undefined; }
};

/** Sums /proc/net/toa_stats rows (one column per CPU, gauges have one). */
export function parseStats(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n').slice(1)) {
    const [name, ...values] = line.trim().split(/\s+/);
    if (!name || values.length === 0) continue;
    out[name] = values.reduce((sum, v) => sum + (Number(v) || 0), 0);
  }
  return out;
}

function kinds(value: string | undefined): number[] | undefined {
  if (value === undefined) return undefined;
  return value.trim().split(/[,\s]+/).filter(Boolean).map(Number);
}

function kmodProvider(): Provider | undefined {
  const params = '/sys/module/toa/parameters';
  const stats = read('/proc/net/toa_stats');
  if (!existsSync('/sys/module/toa') && stats === undefined) return undefined;
  const counters = stats === undefined ? undefined : parseStats(stats);
  if (existsSync(`${params}/trusted`)) {
    const trusted = (read(`${params}/trusted`) ?? '').trim();
    const refcnt = read('/sys/module/toa/refcnt')?.trim();
    return {
      kind: 'node-toa-kmod',
      detail: `node-toa kernel module ${read('/sys/module/toa/version')?.trim() ?? ''}`.trim(),
      ipv4Kinds: kinds(read(`${params}/ipv4_kinds`)),
      ipv6Kinds: kinds(read(`${params}/ipv6_kinds`)),
      trusted: trusted && trusted !== '(none)' ? trusted.split(',') : [],
      ports: existsSync(`${params}/ports`) ? kinds(read(`${params}/ports`)) : undefined,
      counters,
      holders: refcnt === undefined ? undefined : Number(refcnt),
    };
  }
  return { kind: 'other-kmod', detail: 'a TOA kernel module that is not node-toa\'s (Tencent, DPVS, UCloud...)', counters };
}

async function bpfProvider(findings: Finding[]): Promise<Provider | undefined> {
  if (process.platform !== 'linux') return undefined;
  let bpf: typeof import('./bpf');
  try {
    bpf = await import('./bpf');
    const s = await bpf.status();
    if (s.access === 'denied') {
      // the pins exist or not: this user cannot tell, so do not say "absent"
      findings.push({ level: 'warn', message: `permission denied: cannot read the eBPF backend's pins under ${s.pinDir}`, next: 'run doctor as root' });
      return undefined;
    }
    if (!s.loaded && s.attachments.length === 0) {
      if (s.orphans.length) {
        findings.push({ level: 'fail', message: `eBPF programs of node-toa attached without pins: ${s.orphans.map((o) => `${o.program} on ${o.cgroup}`).join(', ')}`, next: 'npx node-toa bpf detach, then attach' });
      }
      return undefined;
    }
    return {
      kind: 'node-toa-bpf',
      detail: `node-toa eBPF backend pinned at ${s.pinDir}`,
      ipv4Kinds: s.config?.ipv4Kinds,
      ipv6Kinds: s.config?.ipv6Kinds,
      trusted: s.config?.trusted,
      counters: s.counters as Record<string, number> | undefined,
      cgroups: s.cgroups,
    };
  } catch (err) {
    const e = err as Error & { code?: string };
    // Without the loader or the rights the pins cannot be read: say so, don't guess.
    findings.push({ level: 'warn', message: `could not inspect the eBPF backend: ${e.message}`, next: e.code === 'ERR_TOA_BPF_NO_LOADER' ? 'reinstall node-toa (its toa-bpf loader is missing)' : 'run doctor as root' });
    return undefined;
  }
}

/** A loopback connection made here: does a provider answer this process? */
async function selfTest(): Promise<DoctorReport['selfTest']> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    client.on('error', () => {});
    const socket = await accepted;
    try {
      let extendedQuery: string;
      try {
        getToaInfo(socket);
        extendedQuery = 'answered';
      } catch (err) {
        extendedQuery = (err as { code?: string }).code ?? String(err);
      }
      return { extendedQuery, source: lookup(socket).source };
    } finally {
      socket.destroy();
      client.destroy();
    }
  } finally {
    server.close();
  }
}

function socketOwners(): Map<string, string> {
  const owners = new Map<string, string>();
  let pids: string[];
  try { pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p)); } catch { return owners; }
  for (const pid of pids.slice(0, 5000)) {
    let fds: string[];
    try { fds = readdirSync(`/proc/${pid}/fd`); } catch { continue; }
    const comm = read(`/proc/${pid}/comm`)?.trim() ?? '?';
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) owners.set(m[1], `${comm} (pid ${pid})`);
      } catch { /* fd closed meanwhile */ }
    }
  }
  return owners;
}

/** TCP listeners of this network namespace, from /proc/net/tcp{,6}. */
export function listeners(): Listener[] {
  const out: Listener[] = [];
  let owners: Map<string, string> | undefined;
  for (const [file, v6] of [['/proc/net/tcp', false], ['/proc/net/tcp6', true]] as const) {
    const text = read(file);
    if (!text) continue;
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] !== '0A') continue; // LISTEN
      const [hexAddr, hexPort] = f[1].split(':');
      const any = /^0+$/.test(hexAddr);
      const address = any ? (v6 ? '::' : '0.0.0.0') : v6 ? hexAddr : hexAddr.match(/../g)!.reverse().map((h) => parseInt(h, 16)).join('.');
      owners ??= socketOwners();
      out.push({ address, port: parseInt(hexPort, 16), dualStack: v6 && any, process: owners.get(f[9]) });
    }
  }
  return out;
}

export async function doctor(): Promise<DoctorReport> {
  const findings: Finding[] = [];
  const kernel = release();
  const providers: Provider[] = [];
  if (process.platform !== 'linux') {
    findings.push({ level: 'fail', message: `TOA is a Linux kernel feature; on ${process.platform} node-toa reports the peer address`, next: 'run the server on Linux behind the load balancer' });
    return { kernel, platform: process.platform, providers, selfTest: { extendedQuery: 'unsupported' }, listeners: [], findings, verdict: 'fail' };
  }
  const m = /^(\d+)\.(\d+)/.exec(kernel);
  const [major, minor] = m ? [Number(m[1]), Number(m[2])] : [0, 0];
  if (major < 5 || (major === 5 && minor < 10)) {
    findings.push({ level: 'warn', message: `kernel ${kernel} is older than 5.10: untested, and the eBPF backend cannot run`, next: 'use the kernel module (kmod/) or upgrade the kernel' });
  }
  const kmod = kmodProvider();
  if (kmod) providers.push(kmod);
  const bpf = await bpfProvider(findings);
  if (bpf) providers.push(bpf);

  // Before the self-test, whose own listener is not the user's.
  const ls = listeners();
  let test: DoctorReport['selfTest'];
  try {
    test = await selfTest();
  } catch (err) {
    test = { extendedQuery: (err as { code?: string }).code ?? String(err) };
    findings.push({ level: 'fail', message: `the native addon does not work here: ${(err as Error).message}`, next: 'npm rebuild node-toa (or npm install --build-from-source node-toa)' });
  }

  const bpfDenied = findings.some((f) => f.message.startsWith('permission denied'));
  if (providers.length === 0 && !bpfDenied) {
    findings.push({
      level: 'fail',
      message: 'no TOA provider is active: every connection through a full-NAT balancer shows the balancer\'s address',
      next: 'load the kernel module (cd node_modules/node-toa/kmod && make && sudo make install && sudo modprobe toa) or attach the eBPF backend (sudo npx node-toa bpf attach --trusted <balancer CIDRs>)',
    });
  }
  for (const p of providers) {
    if (p.kind === 'other-kmod') {
      findings.push({ level: 'warn', message: `${p.detail} is loaded: IPv4 clients are rewritten into getpeername, the Tencent/DPVS NAT64 query is used, but there is no spoofing protection and no extended query`, next: 'replace it with node-toa\'s module for trusted ranges and dual-stack support' });
      if (ls.some((l) => l.dualStack)) {
        findings.push({ level: 'warn', message: 'servers listen on :: (dual-stack) and most vendor modules only hook the IPv4 path: IPv4 clients on those listeners may show the balancer', next: 'listen on 0.0.0.0, or use node-toa\'s module or eBPF backend, which cover ::' });
      }
      continue;
    }
    if (p.trusted && p.trusted.length === 0) {
      findings.push({
        level: 'warn',
        message: `${p.detail}: NO trusted ranges configured. Anyone who can reach this server directly can put any address in a TOA option and it will be believed (spoofing).`,
        next: p.kind === 'node-toa-kmod'
          ? 'echo 203.0.113.0/24,2001:db8::/32 > /sys/module/toa/parameters/trusted  (your balancer\'s SNAT ranges), and firewall direct access'
          : 'npx node-toa bpf set --trusted <your balancer SNAT CIDRs>, and firewall direct access',
      });
    } else if (p.trusted) {
      findings.push({ level: 'ok', message: `${p.detail}: options honoured only from ${p.trusted.join(', ')}` });
    }
    if (p.kind === 'node-toa-bpf' && p.cgroups && p.cgroups.length === 0) {
      findings.push({ level: 'fail', message: 'the eBPF programs are loaded but not attached to any cgroup', next: 'npx node-toa bpf attach' });
    }
    const c = p.counters ?? {};
    if ((c.probe_missed ?? 0) > 0) {
      findings.push({ level: 'warn', message: `${c.probe_missed} probe hits were missed: those connections showed the balancer`, next: 'report it with the CPU count and load (node-toa doctor --json)' });
    }
    if (p.holders && p.holders > 0) {
      findings.push({ level: 'ok', message: `${p.holders} open sockets (TOA listeners and the sockets accepted from them) hold the module: rmmod is refused ("in use") until they are closed` });
    }
    if ((c.swap_foreign_ops ?? 0) > 0) {
      findings.push({ level: 'warn', message: `${c.swap_foreign_ops} TOA handshakes arrived on listeners whose socket operations are not the kernel's TCP ones (kTLS, another module): getpeername there shows the balancer`, next: 'read the client with lookup() / realRemoteAddress (the getsockopt queries answer there), or listen without kTLS' });
    }
    if ((c.untrusted ?? 0) > 0) {
      findings.push({ level: 'warn', message: `${c.untrusted} TOA options were ignored because their source is not trusted`, next: 'if these come from your balancer, add its SNAT range to the trusted list; otherwise someone is trying to spoof addresses' });
    }
    // A handful of connections (doctor's own self-test among them) proves
    // nothing; a steady stream with no TOA at all points at the balancer.
    if ((c.syn_recv_sock_toa ?? 0) === 0 && (c.syn_recv_sock_no_toa ?? 0) >= 10) {
      findings.push({ level: 'warn', message: `${c.syn_recv_sock_no_toa} connections arrived and none carried a TOA option`, next: 'check the balancer sends TOA (Tencent CLB: on by default for TCP listeners; LVS/DPVS: kind 254 → set ipv4_kinds=254), and that clients come through it' });
    }
  }
  const ours = providers.some((p) => p.kind !== 'other-kmod');
  if (ours && test.extendedQuery === 'ENOPROTOOPT') {
    findings.push({ level: 'warn', message: 'a node-toa provider exists but did not answer this process (eBPF attached to another cgroup?)', next: 'attach to the cgroup your server runs in, or to the root (default)' });
  } else if (ours && test.extendedQuery === 'answered') {
    findings.push({ level: 'ok', message: 'the addon reached the provider from this process (extended query answered)' });
  }
  const dual = ls.filter((l) => l.dualStack);
  if (dual.length && ours) {
    findings.push({ level: 'ok', message: `${dual.length} listener(s) on :: (dual-stack): covered, IPv4 clients are reported as ::ffff:a.b.c.d` });
  }
  const verdict = findings.some((f) => f.level === 'fail') ? 'fail' : findings.some((f) => f.level === 'warn') ? 'warn' : 'ok';
  return { kernel, platform: process.platform, providers, selfTest: test, listeners: ls, findings, verdict };
}

export function renderDoctor(r: DoctorReport): string {
  const lines: string[] = [];
  lines.push(`kernel      ${r.kernel} (${r.platform})`);
  if (r.providers.length === 0) lines.push('provider    none');
  for (const p of r.providers) {
    lines.push(`provider    ${p.kind}: ${p.detail}`);
    if (p.ipv4Kinds) lines.push(`  kinds     IPv4 ${p.ipv4Kinds.join(',')}  IPv6 ${p.ipv6Kinds?.join(',') ?? '?'}`);
    if (p.trusted) lines.push(`  trusted   ${p.trusted.length ? p.trusted.join(', ') : '(none: every source is believed)'}`);
    if (p.ports) lines.push(`  ports     ${p.ports.length ? p.ports.join(', ') : '(all local ports)'}`);
    if (p.cgroups) lines.push(`  cgroups   ${p.cgroups.join(', ') || '(not attached)'}`);
    for (const [name, value] of Object.entries(p.counters ?? {})) {
      lines.push(`  ${name.padEnd(22)} ${String(value).padStart(10)}  ${COUNTER_MEANINGS[name] ?? ''}`);
    }
  }
  lines.push(`self-test   extended query: ${r.selfTest.extendedQuery}; lookup source: ${r.selfTest.source ?? '-'}`);
  for (const l of r.listeners) {
    lines.push(`listener    ${l.address}:${l.port}${l.dualStack ? ' (dual-stack)' : ''}${l.process ? `  ${l.process}` : ''}`);
  }
  lines.push('');
  for (const f of r.findings) {
    lines.push(`${f.level === 'ok' ? 'ok  ' : f.level === 'warn' ? 'WARN' : 'FAIL'}  ${f.message}`);
    if (f.next) lines.push(`      next: ${f.next}`);
  }
  lines.push('', `verdict: ${r.verdict === 'ok' ? 'TOA works' : r.verdict === 'warn' ? 'TOA works, with warnings' : 'TOA cannot work as things are'}`);
  return lines.join('\n');
}
