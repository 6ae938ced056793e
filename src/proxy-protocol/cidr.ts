// The `trusted` list: CIDRs matched against the peer address as Node
// formats it ('127.0.0.1', '::ffff:127.0.0.1', '2001:db8::1').
import { parseIPv4, parseIPv6 } from './address';

/** An address as 16 bytes, IPv4 as v4-mapped IPv6, so one comparison serves both families. */
function bytes16(address: string): Uint8Array | undefined {
  const v4 = parseIPv4(address);
  if (!v4) return parseIPv6(address);
  const b = new Uint8Array(16);
  b[10] = 0xff;
  b[11] = 0xff;
  b.set(v4, 12);
  return b;
}

interface Cidr { readonly net: Uint8Array; readonly bits: number }

/**
 * A predicate for "is this address in one of the CIDRs". Not net.BlockList:
 * its check() builds a SocketAddress per call (~6 us), which was the largest
 * cost per connection in the accept benchmark.
 */
export function trustedMatcher(entries: unknown, invalid: (message: string) => Error): (address: string) => boolean {
  if (!Array.isArray(entries) || entries.length === 0) {
    throw invalid("is required: a non-empty array of CIDRs (the balancers' addresses)");
  }
  const list: Cidr[] = entries.map((entry: unknown) => {
    const [addr, bits, extra] = typeof entry === 'string' ? entry.split('/') : [];
    const bytes = addr === undefined ? undefined : bytes16(addr);
    const v4 = addr !== undefined && parseIPv4(addr) !== undefined;
    const max = v4 ? 32 : 128;
    const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : -1;
    if (!bytes || extra !== undefined || prefix < 0 || prefix > max) {
      throw invalid(`has ${JSON.stringify(entry)}, not an IPv4/IPv6 address or CIDR`);
    }
    return { net: bytes, bits: v4 ? prefix + 96 : prefix };
  });
  const matches = (address: string): boolean => {
    const a = bytes16(address);
    if (!a) return false;
    outer: for (const { net, bits } of list) {
      const whole = bits >> 3;
      for (let i = 0; i < whole; i++) if (a[i] !== net[i]) continue outer;
      const rest = bits & 7;
      if (rest && (a[whole] ^ net[whole]) & (0xff << (8 - rest)) & 0xff) continue;
      return true;
    }
    return false;
  };
  // Connections come from a few balancers: the answer per address string is
  // remembered (parsing it into bytes was ~0.5 us per connection). Bounded,
  // so that clients from everywhere ('optional' mode) cannot grow it.
  const seen = new Map<string, boolean>();
  return (address: string): boolean => {
    let yes = seen.get(address);
    if (yes === undefined) {
      yes = matches(address);
      if (seen.size >= MEMO_ENTRIES) seen.clear();
      seen.set(address, yes);
    }
    return yes;
  };
}

const MEMO_ENTRIES = 1024;
