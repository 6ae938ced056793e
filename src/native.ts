// Loads the addon. On Linux it is required: without it the package would
// silently report the balancer's address, so its absence is an error at
// first use. Elsewhere there is no TOA provider to ask and the addon is
// neither built nor loaded.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { toaError } from './errors';

export interface Binding {
  query(fd: number, checkType: boolean, addressOnly: boolean, meta: Int32Array, out: string[]): boolean;
  rawSockopt(fd: number, optname: number, buf: Uint8Array): [errno: number, len: number];
  ntop(family: 4 | 6, bytes: Uint8Array): string;
  readonly META_LENGTH: number;
  readonly TOA_SO_GET_LOOKUP: number;
  readonly TOA_SO_GET_INFO: number;
  readonly TOA_INFO_SIZE: number;
  readonly TOA_NAT64_PEER_SIZE: number;
}

// Indices into the meta array; native/binding.cc has the same enum.
export const enum Meta {
  Errno, Syscall, Source, Family, Port, Flags, OptKind,
  ProxyFamily, ProxyPort, NotTcp, Domain, Type, Complete, Length,
}

export const supported = process.platform === 'linux';

let binding: Binding | undefined;
let loadError: Error | undefined;

// src/native.ts (tests) and dist/cjs/native.js (published) sit at different
// depths; the package root is the folder that holds binding.gyp.
function packageRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'binding.gyp'))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(__dirname, '..', '..');
  }
}

export function getBinding(): Binding {
  if (binding) return binding;
  if (!supported) {
    throw toaError('ERR_TOA_UNSUPPORTED_PLATFORM',
      `TOA is a Linux kernel feature; raw fd queries are not available on ${process.platform}`);
  }
  if (!loadError) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const load = require('node-gyp-build') as (dir: string) => Binding;
      binding = load(packageRoot());
      return binding;
    } catch (err) {
      loadError = err as Error;
    }
  }
  const e = toaError('ERR_TOA_NATIVE_MISSING',
    `node-toa's native addon could not be loaded (${loadError.message}); ` +
    'reinstall with `npm install --build-from-source node-toa` (needs python3, make, g++)');
  (e as Error & { cause?: unknown }).cause = loadError;
  throw e;
}
