// Marshalling between the addon's query() and LookupResult: numbers and
// strings in, a frozen answer or a Node-style error out. No caching here.
import { constants } from 'node:os';
import { systemError, toaError } from './errors';
import type { AddressFamily, LookupResult, PeerAddress } from './lookup';
import { loadBinding } from './native';

// One scratch area for every call: the addon writes numbers here instead of
// allocating an object per query.
let meta: Int32Array | undefined;
const strings: string[] = ['', ''];

function familyName(n: number): AddressFamily {
  return n === 6 ? 'IPv6' : 'IPv4';
}

/**
 * Runs the native query; returns the result or the error (never throws).
 * With `addressOnly` the answer may be just a PeerAddress (no `source`):
 * on AF_INET6 sockets getpeername alone is the client's address.
 */
export function queryFd(fd: number, checkType: boolean, addressOnly = false): LookupResult | PeerAddress | Error {
  const binding = loadBinding();
  if (binding instanceof Error) return binding;
  const M = binding.META;
  const m = meta ?? (meta = new Int32Array(M.MetaLength));
  if (!binding.query(fd, checkType, addressOnly, m, strings)) {
    if (m[M.NotTcp]) {
      const what = m[M.Domain] === 1 ? 'a Unix domain socket'
        : m[M.Type] === 2 ? 'a UDP socket' : `a socket of domain ${m[M.Domain]}, type ${m[M.Type]}`;
      return toaError('ERR_TOA_NOT_TCP', `TOA applies to TCP sockets only; this is ${what}`);
    }
    if (m[M.Errno] === constants.errno.EPROTO) {
      return toaError('ERR_TOA_BAD_ANSWER',
        'the TOA provider answered getsockopt with a structure this version cannot read');
    }
    return systemError(m[M.Errno], binding.SYSCALLS[m[M.Syscall]] || 'getsockopt');
  }
  const address = strings[0];
  const port = m[M.Port];
  const family = familyName(m[M.Family]);
  if (!m[M.Complete]) return Object.freeze({ address, port, family });
  const source = binding.SOURCES[m[M.Source]];
  const flags = m[M.Flags];
  const F = binding.TOA_INFO.flags;
  const result: {
    -readonly [K in keyof LookupResult]: LookupResult[K]
  } = { address, port, family, source };
  if (m[M.ProxyFamily]) {
    result.proxy = Object.freeze({
      address: strings[1], port: m[M.ProxyPort], family: familyName(m[M.ProxyFamily]),
    });
  }
  if (source === 'toa') result.trusted = (flags & F.TRUSTED) !== 0;
  if (flags & F.UNTRUSTED && !(flags & F.PRESENT)) result.rejected = true;
  if (m[M.OptKind]) result.optionKind = m[M.OptKind];
  return Object.freeze(result);
}
