// What the framework integrations share: the per-request answer (never a
// throw: a request must not fail because its address could not be read) and
// the refusal rule.
import type * as net from 'node:net';
import { toaError } from '../errors';
import { resolve } from '../cache';
import type { LookupResult } from '../lookup';

/**
 * - `'rejected'`: a TOA option arrived from a sender outside the provider's
 *   trusted ranges and was ignored (someone forging, or a missing range);
 * - `'untrusted'`: the address comes from TOA but the provider has no
 *   trusted ranges, so anyone who reaches the server could have chosen it.
 */
export type RejectReason = 'rejected' | 'untrusted';

export interface IntegrationOptions {
  /** Refuse requests for these reasons (default: none). */
  readonly reject?: readonly RejectReason[];
  /** HTTP status of a refused request (default 403). */
  readonly rejectStatus?: number;
}

export interface Settings { reject: ReadonlySet<RejectReason>; status: number }

const REASONS: readonly RejectReason[] = ['rejected', 'untrusted'];

export function settings(options: IntegrationOptions | undefined): Settings {
  const reject = options?.reject ?? [];
  if (!Array.isArray(reject) || reject.some((r) => !REASONS.includes(r))) {
    throw toaError('ERR_INVALID_ARG_VALUE', `The "reject" option must be an array of ${REASONS.map((r) => `'${r}'`).join(', ')}. Received ${JSON.stringify(reject)}`, TypeError);
  }
  const status = options?.rejectStatus ?? 403;
  if (!Number.isInteger(status) || status < 400 || status > 599) {
    throw toaError('ERR_INVALID_ARG_VALUE', `The "rejectStatus" option must be an HTTP error status (400-599). Received ${String(status)}`, RangeError);
  }
  return { reject: new Set(reject), status };
}

/** lookup() for a request's socket, or undefined when there is no answer. */
export function toaOf(socket: net.Socket): LookupResult | undefined {
  const r = resolve(socket);
  return r instanceof Error ? undefined : r;
}

export function refusal(toa: LookupResult | undefined, s: Settings): RejectReason | undefined {
  if (toa?.rejected && s.reject.has('rejected')) return 'rejected';
  if (toa?.source === 'toa' && toa.trusted === false && s.reject.has('untrusted')) return 'untrusted';
  return undefined;
}

export function refusalBody(reason: RejectReason): string {
  return JSON.stringify({ error: 'client address not trusted', reason });
}
