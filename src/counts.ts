// This process's tally of where connections' addresses came from, one count
// per connection whose source was determined (lookup(), the framework
// integrations). Address-only reads (the getters) do not learn the source
// on AF_INET6 sockets, so they are not counted; the provider's kernel
// counters (node-toa/metrics) count every connection.
import type { LookupResult } from './lookup';

export interface SourceCounts {
  toa: number;
  'toa-nat64': number;
  peer: number;
  'proxy-protocol': number;
  /** Connections whose TOA option was ignored because its sender is not trusted (also counted as peer). */
  rejected: number;
}

const counts: SourceCounts = { toa: 0, 'toa-nat64': 0, peer: 0, 'proxy-protocol': 0, rejected: 0 };

export function countSource(result: LookupResult): void {
  counts[result.source]++;
  if (result.rejected) counts.rejected++;
}

export function sourceCounts(): Readonly<SourceCounts> {
  return { ...counts };
}
