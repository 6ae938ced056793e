// Packet capture for proving what is on the wire: tcpdump writes pcap to a
// pipe, this file decodes IPv4/IPv6 TCP segments and their options.
import { spawn } from 'node:child_process';

const LINKTYPE = { ETHERNET: 1, RAW: 101, LINUX_SLL: 113, IPV4: 228, IPV6: 229, LINUX_SLL2: 276 };

function ipString(buf) {
  if (buf.length === 4) return [...buf].join('.');
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(buf.readUInt16BE(i).toString(16));
  // compress the longest zero run, as inet_ntop does
  let best = [-1, 0];
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > best[1] && j - i > 1) best = [i, j - i];
    i = j;
  }
  if (best[0] < 0) return groups.join(':');
  return `${groups.slice(0, best[0]).join(':')}::${groups.slice(best[0] + best[1]).join(':')}`;
}

/**
 * Walks TCP options like the kernel does (EOL ends, NOP skipped, len < 2 or
 * past the end stops). `malformed` tells why the walk stopped early.
 */
export function parseTcpOptions(bytes) {
  const options = [];
  let malformed = null;
  for (let i = 0; i < bytes.length;) {
    const kind = bytes[i];
    if (kind === 0) break;
    if (kind === 1) { i++; continue; }
    if (i + 1 >= bytes.length) { malformed = 'truncated'; break; }
    const len = bytes[i + 1];
    if (len < 2) { malformed = 'short-length'; break; }
    if (i + len > bytes.length) { malformed = 'overrun'; break; }
    options.push({ kind, len, data: bytes.subarray(i + 2, i + len) });
    i += len;
  }
  return { options, malformed };
}

/** Decodes an IP packet into the TCP fields tests care about, or null. */
export function decodeIp(pkt) {
  const v = pkt[0] >> 4;
  let l4;
  let src;
  let dst;
  if (v === 4 && pkt.length >= 20 && pkt[9] === 6) {
    const ihl = (pkt[0] & 15) * 4;
    src = ipString(pkt.subarray(12, 16));
    dst = ipString(pkt.subarray(16, 20));
    l4 = pkt.subarray(ihl, pkt.readUInt16BE(2));
  } else if (v === 6 && pkt.length >= 40 && pkt[6] === 6) {
    src = ipString(pkt.subarray(8, 24));
    dst = ipString(pkt.subarray(24, 40));
    l4 = pkt.subarray(40, 40 + pkt.readUInt16BE(4));
  } else {
    return null;
  }
  if (l4.length < 20) return null;
  const doff = (l4[12] >> 4) * 4;
  const f = l4[13];
  const rawOptions = Buffer.from(l4.subarray(20, doff));
  return {
    family: v === 4 ? 4 : 6,
    src, dst,
    sport: l4.readUInt16BE(0),
    dport: l4.readUInt16BE(2),
    seq: l4.readUInt32BE(4),
    ack: l4.readUInt32BE(8),
    flags: {
      fin: !!(f & 1), syn: !!(f & 2), rst: !!(f & 4), psh: !!(f & 8), ack: !!(f & 16),
    },
    rawOptions,
    ...parseTcpOptions(rawOptions),
    payloadLength: Math.max(0, l4.length - doff),
  };
}

/** Splits a complete pcap byte stream into decoded TCP packets (with `time` in µs). */
export function parsePcap(buf) {
  if (buf.length < 24) return [];
  const magic = buf.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && buf.readUInt32BE(0) !== 0xa1b2c3d4 && buf.readUInt32BE(0) !== 0xa1b23c4d) {
    throw Object.assign(new Error('not a pcap stream'), { code: 'EPCAP' });
  }
  const u32 = (o) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const nano = (le ? magic : buf.readUInt32BE(0)) === 0xa1b23c4d;
  const link = u32(20) & 0xffff;
  const packets = [];
  for (let off = 24; off + 16 <= buf.length;) {
    const caplen = u32(off + 8);
    if (off + 16 + caplen > buf.length) break;
    const frame = buf.subarray(off + 16, off + 16 + caplen);
    const time = u32(off) * 1e6 + (nano ? Math.floor(u32(off + 4) / 1000) : u32(off + 4));
    off += 16 + caplen;
    let ip;
    if (link === LINKTYPE.ETHERNET) {
      let et = frame.readUInt16BE(12);
      let o = 14;
      if (et === 0x8100) { et = frame.readUInt16BE(16); o = 18; }
      if (et !== 0x0800 && et !== 0x86dd) continue;
      ip = frame.subarray(o);
    } else if (link === LINKTYPE.LINUX_SLL) {
      ip = frame.subarray(16);
    } else if (link === LINKTYPE.LINUX_SLL2) {
      ip = frame.subarray(20);
    } else {
      ip = frame;
    }
    const p = decodeIp(ip);
    if (p) packets.push({ time, ...p });
  }
  return packets;
}

/**
 * Starts tcpdump on `iface` (default: the emulator's server-side veth).
 * `await capture.stop()` returns every TCP packet seen.
 */
export async function startCapture({ iface, filter = 'tcp', snaplen = 256, startTimeoutMs = 10000 }) {
  const proc = spawn('tcpdump', ['-i', iface, '--immediate-mode', '-U', '-n', '-s', String(snaplen), '-w', '-', filter],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks = [];
  let stderr = '';
  proc.stdout.on('data', (d) => chunks.push(d));
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`tcpdump did not start: ${stderr}`)); }, startTimeoutMs);
    proc.stderr.on('data', (d) => {
      stderr += d;
      if (stderr.includes('listening on')) { clearTimeout(timer); resolve(); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(Object.assign(new Error(`tcpdump exited ${code}: ${stderr}`), { code: 'ECAPTURE' })); });
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
  return {
    proc,
    /** `settleMs` lets tcpdump read what the kernel already queued for it. */
    async stop({ settleMs = 200 } = {}) {
      await new Promise((r) => setTimeout(r, settleMs));
      if (proc.exitCode === null) proc.kill('SIGINT');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
      return parsePcap(Buffer.concat(chunks));
    },
  };
}
