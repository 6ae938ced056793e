// The two getsockopt queries as the kernel answers them, for tools and tests
// that need the ABI itself (doctor, the kernel-side suites). lookup() is the
// API applications want.
import * as net from 'node:net';
import { constants } from 'node:os';
import { systemError, toaError } from './errors';
import type { AddressFamily, PeerAddress } from './lookup';
import { getBinding } from './native';
import { validateFd, validateSocket } from './validate';

/** struct toa_info (kmod/uapi/toa.h), decoded. */
export interface ToaInfo extends PeerAddress {
  readonly version: number;
  readonly flags: number;
  /** TOA_INFO_F_PRESENT: the address comes from a TOA option. */
  readonly present: boolean;
  /** TOA_INFO_F_NAT64: the client is IPv6. */
  readonly nat64: boolean;
  /** TOA_INFO_F_TRUSTED: the option's source matched a trusted range. */
  readonly trusted: boolean;
  /** TOA_INFO_F_UNTRUSTED: an option was seen and ignored. */
  readonly untrusted: boolean;
  readonly socketFamily: AddressFamily;
  /** The packet's source: the balancer (equals the address without TOA). */
  readonly proxy: PeerAddress;
  readonly optionKind: number;
}

function fdOf(target: net.Socket | number): number {
  if (typeof target === 'number') {
    validateFd(target);
    return target;
  }
  validateSocket(target);
  const fd = (target as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw target.destroyed
      ? toaError('ERR_SOCKET_CLOSED', 'Socket is closed')
      : systemError(constants.errno.ENOTCONN, 'getsockopt');
  }
  return fd;
}

function sockopt(target: net.Socket | number, optname: number, size: number): Buffer {
  const binding = getBinding();
  const buf = Buffer.alloc(size);
  const [errno, len] = binding.rawSockopt(fdOf(target), optname, buf);
  if (errno) throw systemError(errno, 'getsockopt');
  if (len < size) {
    throw toaError('ERR_TOA_BAD_ANSWER', `getsockopt ${optname} returned ${len} bytes, expected ${size}`);
  }
  return buf;
}

/**
 * node-toa's extended query (getsockopt IPPROTO_IP 4097). Throws a system
 * error: `ENOPROTOOPT` when no node-toa provider is active, `ENOTCONN`...
 * Offsets, flags and families come from the addon, which took them from
 * kmod/uapi/toa.h.
 */
export function getToaInfo(target: net.Socket | number): ToaInfo {
  const binding = getBinding();
  const L = binding.TOA_INFO;
  const o = L.offsets;
  const b = sockopt(target, binding.TOA_SO_GET_INFO, L.size);
  const family = (af: number): AddressFamily => {
    if (af === L.AF_INET) return 'IPv4';
    if (af === L.AF_INET6) return 'IPv6';
    throw toaError('ERR_TOA_BAD_ANSWER', `unknown address family ${af} in the provider's answer`);
  };
  const flags = b.readUInt32LE(o.flags);
  const sockFamily = b.readUInt16LE(o.sock_family);
  const socketFamily = family(sockFamily);
  // Shown as getpeername on this socket would show it: v4-mapped on AF_INET6.
  const peer = (af: number, addr: number, port: number): PeerAddress => {
    family(af);
    const address = binding.formatAddress(sockFamily, af, b.subarray(addr, addr + 16));
    return { address, port: b.readUInt16BE(port), family: sockFamily === L.AF_INET6 ? 'IPv6' : family(af) };
  };
  const real = peer(b.readUInt16LE(o.real_family), o.real_addr, o.real_port);
  return Object.freeze({
    version: b.readUInt32LE(o.version),
    flags,
    present: (flags & L.flags.PRESENT) !== 0,
    nat64: (flags & L.flags.NAT64) !== 0,
    trusted: (flags & L.flags.TRUSTED) !== 0,
    untrusted: (flags & L.flags.UNTRUSTED) !== 0,
    socketFamily,
    ...real,
    proxy: Object.freeze(peer(b.readUInt16LE(o.proxy_family), o.proxy_addr, o.proxy_port)),
    optionKind: b[o.opt_kind],
  });
}

/**
 * The Tencent/DPVS NAT64 query (getsockopt IPPROTO_IP 4096). Throws
 * `EINVAL` (no TOA on this socket), `EFAULT` (TOA present, not NAT64),
 * `ENOPROTOOPT` (no TOA module) as those modules do.
 */
export function getNat64Peer(target: net.Socket | number): PeerAddress {
  const binding = getBinding();
  const b = sockopt(target, binding.TOA_SO_GET_LOOKUP, binding.TOA_NAT64_PEER_SIZE);
  const AF_INET6 = binding.TOA_INFO.AF_INET6;
  return Object.freeze({ address: binding.formatAddress(AF_INET6, AF_INET6, b.subarray(0, 16)), port: b.readUInt16BE(16), family: 'IPv6' as const });
}
