// Loads the addon. On Linux it is required: without it the package cannot
// tell a TOA client from the balancer, so lookup() throws and the getters
// answer undefined (never a guess), and the process is warned once.
// Elsewhere there is no TOA provider to ask and the addon is neither built
// nor loaded.
import * as path from 'node:path';
import { toaError } from './errors';

export interface MetaIndices {
  readonly Errno: number; readonly Syscall: number; readonly Source: number; readonly Family: number;
  readonly Port: number; readonly Flags: number; readonly OptKind: number; readonly ProxyFamily: number;
  readonly ProxyPort: number; readonly NotTcp: number; readonly Domain: number; readonly Type: number;
  readonly Complete: number; readonly MetaLength: number;
}

/** struct toa_info as the compiler laid it out (kmod/uapi/toa.h). */
export interface ToaInfoLayout {
  readonly offsets: {
    readonly version: number; readonly flags: number; readonly sock_family: number; readonly real_family: number;
    readonly real_port: number; readonly proxy_port: number; readonly real_addr: number; readonly proxy_addr: number;
    readonly proxy_family: number; readonly opt_kind: number;
  };
  readonly size: number;
  readonly version: number;
  readonly flags: { readonly PRESENT: number; readonly NAT64: number; readonly TRUSTED: number; readonly UNTRUSTED: number };
  readonly AF_INET: number;
  readonly AF_INET6: number;
}

export interface Binding {
  query(fd: number, checkType: boolean, addressOnly: boolean, meta: Int32Array, out: string[]): boolean;
  rawSockopt(fd: number, optname: number, buf: Uint8Array): [errno: number, len: number];
  formatAddress(sockFamily: number, family: number, bytes: Uint8Array): string;
  readonly META: MetaIndices;
  readonly SOURCES: readonly ('peer' | 'toa' | 'toa-nat64')[];
  readonly SYSCALLS: readonly string[];
  readonly TOA_SO_GET_LOOKUP: number;
  readonly TOA_SO_GET_INFO: number;
  readonly TOA_INFO: ToaInfoLayout;
  readonly TOA_NAT64_PEER_SIZE: number;
}

export const supported = process.platform === 'linux';

// src/native.ts (tests) sits one folder below the package root,
// dist/cjs/native.js two. Fixed by the layout, never searched for: a
// binding.gyp further up belongs to some other project.
export const packageRoot = path.basename(__dirname) === 'cjs' && path.basename(path.dirname(__dirname)) === 'dist'
  ? path.resolve(__dirname, '..', '..')
  : path.resolve(__dirname, '..');

let binding: Binding | undefined;
let loadError: Error | undefined;

/** The addon, or why it cannot be had (never throws). */
export function loadBinding(): Binding | Error {
  if (binding) return binding;
  if (loadError) return loadError;
  if (!supported) {
    loadError = toaError('ERR_TOA_UNSUPPORTED_PLATFORM',
      `TOA is a Linux kernel feature; raw fd queries are not available on ${process.platform}`);
    return loadError;
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as (dir: string) => Binding;
    binding = load(packageRoot);
    return binding;
  } catch (err) {
    const e = toaError('ERR_TOA_NATIVE_MISSING',
      `node-toa's native addon could not be loaded (${(err as Error).message.split('\n')[0]}); ` +
      'lookup() throws and realRemoteAddress is undefined until it is: run `npm rebuild node-toa` ' +
      '(builds from source: needs python3, make, g++)');
    (e as Error & { cause?: unknown }).cause = err;
    loadError = e;
    // Said once per process, whether or not anyone catches the errors.
    process.emitWarning(e.message, { code: 'ERR_TOA_NATIVE_MISSING' });
    return e;
  }
}

export function getBinding(): Binding {
  const b = loadBinding();
  if (b instanceof Error) throw b;
  return b;
}
