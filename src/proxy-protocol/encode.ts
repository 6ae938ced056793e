// Builds PROXY protocol headers: for clients and test balancers, the demo,
// and anything that forwards connections to a server that reads them.
import * as net from 'node:net';
import { parseIPv4, parseIPv6 } from './address';
import { crc32c } from './crc32c';
import { V2_SIGNATURE } from './parse';
import type { ProxyTlv } from './types';

export interface EndpointSpec {
  readonly address: string;
  readonly port: number;
}

export interface EncodeOptions {
  readonly version: 1 | 2;
  /** 'LOCAL' (v2) / 'PROXY UNKNOWN' (v1): a health check, no addresses. Default 'PROXY'. */
  readonly command?: 'PROXY' | 'LOCAL';
  readonly source?: EndpointSpec;
  readonly destination?: EndpointSpec;
  /** v2 only: TLVs written in this order. */
  readonly tlvs?: readonly ProxyTlv[];
  /** v2 only: append a PP2_TYPE_CRC32C TLV over the whole header. */
  readonly crc32c?: boolean;
}

function invalid(message: string): Error {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_VALUE' });
}

function checkPort(what: string, port: unknown): number {
  if (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 0xffff) {
    throw invalid(`${what}.port must be an integer 0-65535`);
  }
  return port as number;
}

export function encodeProxyHeader(options: EncodeOptions): Buffer {
  const { version, command = 'PROXY' } = options;
  if (version !== 1 && version !== 2) throw invalid('version must be 1 or 2');
  if (command !== 'PROXY' && command !== 'LOCAL') throw invalid("command must be 'PROXY' or 'LOCAL'");
  if (version === 1 && (options.tlvs?.length || options.crc32c)) throw invalid('TLVs and crc32c need version 2');
  if (command === 'LOCAL') {
    return version === 1 ? Buffer.from('PROXY UNKNOWN\r\n', 'latin1') : v2Header(0x20, 0x00, Buffer.alloc(0), options);
  }
  const { source, destination } = options;
  if (!source || !destination) throw invalid('source and destination are required for a PROXY command');
  const family = net.isIP(source.address);
  if (family === 0 || family !== net.isIP(destination.address)) {
    throw invalid('source and destination must be IP addresses of the same family');
  }
  const sport = checkPort('source', source.port);
  const dport = checkPort('destination', destination.port);
  if (version === 1) {
    return Buffer.from(`PROXY TCP${family} ${source.address} ${destination.address} ${sport} ${dport}\r\n`, 'latin1');
  }
  const parse = family === 4 ? parseIPv4 : parseIPv6;
  const src = parse(source.address);
  const dst = parse(destination.address);
  if (!src || !dst) throw invalid('source and destination must be canonical addresses (no leading zeros, no zone)');
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sport, 0);
  ports.writeUInt16BE(dport, 2);
  return v2Header(0x21, family === 4 ? 0x11 : 0x21, Buffer.concat([src, dst, ports]), options);
}

function v2Header(verCmd: number, fam: number, addresses: Buffer, options: EncodeOptions): Buffer {
  const tlvs = (options.tlvs ?? []).map(({ type, value }) => {
    if (!Number.isInteger(type) || type < 0 || type > 0xff) throw invalid('TLV type must be an integer 0-255');
    if (value.length > 0xffff) throw invalid('TLV value longer than 65535 bytes');
    const head = Buffer.from([type, value.length >> 8, value.length & 0xff]);
    return Buffer.concat([head, value]);
  });
  if (options.crc32c) tlvs.push(Buffer.from([0x03, 0x00, 0x04, 0, 0, 0, 0]));
  const body = Buffer.concat([addresses, ...tlvs]);
  if (body.length > 0xffff) throw invalid('v2 header longer than 65535 bytes after the fixed part');
  const header = Buffer.concat([V2_SIGNATURE, Buffer.from([verCmd, fam, body.length >> 8, body.length & 0xff]), body]);
  if (options.crc32c) header.writeUInt32BE(crc32c(header), header.length - 4);
  return header;
}
