// Types for index.mjs (see README.md).
export type Family = 4 | 6 | 'IPv4' | 'IPv6';
export type PlacementName = 'none' | 'syn' | 'ack' | 'data' | 'all';
export type Bytes = Buffer | Uint8Array | string;

export declare const PLACEMENT: Readonly<Record<PlacementName, number>>;
export declare class LbError extends Error {
  code: string;
  constructor(code: string, message: string);
}
export declare function build(opts?: { cacheDir?: string }): { bpfObj: string; helper: string };
export declare function cgroup2Root(): string;
export declare function toaOption(o: { kind?: number; address: string; port: number; len?: number }): Buffer;
export declare function ipv6Bytes(address: string): Buffer;

export interface ConnectOptions {
  port: number;
  family?: Family;
  host?: string;
  toa?: { kind?: number; address: string; port: number; len?: number };
  option?: Bytes;
  placement?: PlacementName | PlacementName[] | number;
  timeoutMs?: number;
  /** the kernel's Fast Open client (TCP_FASTOPEN_CONNECT); `data` goes in the SYN when a cookie is cached */
  fastOpen?: boolean;
  data?: Bytes;
}

export declare class ClientConnection {
  readonly localPort: number;
  /** fastOpen only: the SYN-ACK acknowledged data sent in the SYN (TCPI_OPT_SYN_DATA) */
  readonly synDataAcked?: boolean;
  readonly family: Family;
  readonly balancer: { address: string; port: number };
  send(data: Bytes): Promise<number>;
  recv(o?: { max?: number; timeoutMs?: number }): Promise<Buffer | null>;
  recvAll(o?: { timeoutMs?: number }): Promise<Buffer>;
  close(o?: { rst?: boolean }): Promise<void>;
  stats(): Promise<{ syn: number; ack: number; data: number; lastError: number }>;
}

export interface CraftSpec {
  port: number;
  family?: Family;
  synOptions?: Bytes;
  ackOptions?: Bytes;
  dataOptions?: Bytes;
  data?: Bytes;
  noAck?: boolean;
  noMss?: boolean;
  keepOpen?: boolean;
  dataFin?: boolean;
  source?: { address: string; port: number };
}

export interface CraftResult {
  index: number;
  source: { address: string; port: number };
  synAck: boolean;
  connected: boolean;
  ackedBytes: number;
  sentBytes: number;
  serverFin: boolean;
  rst: boolean;
  timedOut: boolean;
  segmentsDropped: boolean;
  ms: number;
  reply: Buffer;
}

export interface CapturedPacket {
  time: number;
  family: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: { fin: boolean; syn: boolean; rst: boolean; psh: boolean; ack: boolean };
  rawOptions: Buffer;
  options: { kind: number; len: number; data: Buffer }[];
  malformed: null | 'truncated' | 'short-length' | 'overrun';
  payloadLength: number;
}

export interface Capture {
  stop(o?: { settleMs?: number }): Promise<CapturedPacket[]>;
}

export declare class LoadBalancer {
  readonly index: number;
  readonly hostIface: string;
  readonly helperPid: number;
  readonly cgroup: string;
  serverAddress(family?: Family): string;
  balancerAddress(family?: Family): string;
  craftAddresses(family?: Family): string[];
  netnsPath(): string;
  connect(o: ConnectOptions): Promise<ClientConnection>;
  sysctl(name: string, value?: string | number): Promise<string>;
  netstat(name: string): number;
  nsIp(lines: string[]): string;
  craft(specs: CraftSpec[], o?: { timeoutMs?: number; window?: number }): Promise<CraftResult[]>;
  capture(o?: { iface?: string; filter?: string; snaplen?: number }): Promise<Capture>;
  close(): Promise<void>;
}

export declare function createLoadBalancer(o?: { startTimeoutMs?: number }): Promise<LoadBalancer>;
