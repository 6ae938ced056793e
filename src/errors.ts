// Node-style errors built from the raw errno the addon returns, so users can
// switch on err.code exactly as they do for fs or net errors.
import * as util from 'node:util';

/**
 * errno names a system error can carry: the ones the README documents, any
 * other errno name (`E...`), and `'UNKNOWN'` for a number libuv has no name
 * for (as Node's own errors say).
 */
export type SystemErrorCode =
  | 'ENOTCONN' | 'ENOTSOCK' | 'EBADF' | 'ENOPROTOOPT' | 'EINVAL' | 'EFAULT'
  | `E${Uppercase<string>}`
  | 'UNKNOWN';

export interface ToaSystemError extends Error {
  code: SystemErrorCode;
  errno: number;
  syscall: string;
}

/** Error codes specific to node-toa (system errors use their errno name). */
export type ToaErrorCode =
  | 'ERR_INVALID_ARG_TYPE'
  | 'ERR_INVALID_ARG_VALUE'
  | 'ERR_OUT_OF_RANGE'
  | 'ERR_SOCKET_CLOSED'
  | 'ERR_TOA_NOT_TCP'
  | 'ERR_TOA_BAD_ANSWER'
  | 'ERR_TOA_NATIVE_MISSING'
  | 'ERR_TOA_OPTIONAL_DEPENDENCY'
  | 'ERR_TOA_UNSUPPORTED_PLATFORM';

export interface ToaError extends Error {
  code: ToaErrorCode;
}

export function toaError(code: ToaErrorCode, message: string, ctor: ErrorConstructor = Error): ToaError {
  const err = new ctor(message) as ToaError;
  err.code = code;
  return err;
}

export function systemError(errno: number, syscall: string): ToaSystemError {
  const neg = -Math.abs(errno);
  // getSystemErrorName returns "Unknown system error -N" for numbers it
  // cannot name (and throws for non-negative ones); Node's own errors then
  // say UNKNOWN.
  let code: SystemErrorCode = 'UNKNOWN';
  try {
    const name = util.getSystemErrorName(neg);
    if (/^E[A-Z0-9]+$/.test(name)) code = name as SystemErrorCode;
  } catch { /* stays UNKNOWN */ }
  const err = new Error(`${syscall} ${code}`) as ToaSystemError;
  err.code = code;
  err.errno = neg;
  err.syscall = syscall;
  return err;
}

export function invalidArgType(name: string, expected: string, actual: unknown): ToaError {
  let shown: string;
  if (actual === null) shown = 'null';
  else if (typeof actual === 'object' || typeof actual === 'function') {
    const ctorName = (actual as { constructor?: { name?: string } }).constructor?.name;
    shown = ctorName ? `an instance of ${ctorName}` : typeof actual;
  } else shown = `type ${typeof actual} (${util.inspect(actual)})`;
  return toaError('ERR_INVALID_ARG_TYPE',
    `The "${name}" argument must be ${expected}. Received ${shown}`, TypeError);
}
