// The two getsockopt queries as the kernel answers them, for tools and tests
// that need the ABI itself (doctor, the kernel-side suites). lookup() is the
// API applications want.
import * as net from 'node:net';
import { constants } from 'node:os';
import { systemError, toaError } from './errors';
import type { AddressFamily, PeerAddress } from './lookup';
import { validateFd, validateSocket } from './lookup';
import { getBinding } from './native';

const AF_INET = 2;
const AF_INET6 = 10;

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

function family(af: number): AddressFamily {
  if (af === AF_INET) return 'IPv4';
  if (af === AF_INET6) return 'IPv6';
  throw toaError('ERR_TOA_BAD_ANSWER', `unknown address family ${af} in the provider's answer`);
}

function address(af: number, bytes: Buffer, socketFamily: number): string {
  const binding = getBinding();
  if (af === AF_INET && socketFamily === AF_INET6) {
    // Format as getpeername on this socket would: v4-mapped.
    const mapped = Buffer.alloc(16);
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    bytes.copy(mapped, 12, 0, 4);
    return binding.ntop(6, mapped);
  }
  return binding.ntop(af === AF_INET6 ? 6 : 4, bytes);
}

/**
 * node-toa's extended query (getsockopt IPPROTO_IP 4097). Throws a system
 * error: `ENOPROTOOPT` when no node-toa provider is active, `ENOTCONN`...
 */
export function getToaInfo(target: net.Socket | number): ToaInfo {
  const binding = getBinding();
  const b = sockopt(target, binding.TOA_SO_GET_INFO, binding.TOA_INFO_SIZE);
  const flags = b.readUInt32LE(4);
  const sockFamily = b.readUInt16LE(8);
  const realFamily = b.readUInt16LE(10);
  const proxyFamily = b.readUInt16LE(48);
  const socketFamily = family(sockFamily);
  const mappedFamily = (af: number): AddressFamily => (af === AF_INET && sockFamily === AF_INET6 ? 'IPv6' : family(af));
  return Object.freeze({
    version: b.readUInt32LE(0),
    flags,
    present: (flags & 0x1) !== 0,
    nat64: (flags & 0x2) !== 0,
    trusted: (flags & 0x4) !== 0,
    untrusted: (flags & 0x8) !== 0,
    socketFamily,
    address: address(realFamily, b.subarray(16, 32), sockFamily),
    port: b.readUInt16BE(12),
    family: mappedFamily(realFamily),
    proxy: Object.freeze({
      address: address(proxyFamily, b.subarray(32, 48), sockFamily),
      port: b.readUInt16BE(14),
      family: mappedFamily(proxyFamily),
    }),
    optionKind: b[50],
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
  return Object.freeze({ address: binding.ntop(6, b.subarray(0, 16)), port: b.readUInt16BE(16), family: 'IPv6' as const });
}
