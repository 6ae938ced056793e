import type { CapturedPacket, Capture } from './index.mjs';
export declare function parseTcpOptions(bytes: Buffer): { options: CapturedPacket['options']; malformed: CapturedPacket['malformed'] };
export declare function decodeIp(pkt: Buffer): Omit<CapturedPacket, 'time'> | null;
export declare function parsePcap(buf: Buffer): CapturedPacket[];
export declare function startCapture(o: { iface: string; filter?: string; snaplen?: number; startTimeoutMs?: number }): Promise<Capture>;
