// node-toa/koa: ctx.state.toa is the lookup() answer; `ip: true` sets
// ctx.request.ip to its address (see node-toa/express for when that matters).
import type { IncomingMessage } from 'node:http';
import { type IntegrationOptions, refusal, refusalBody, settings, toaOf } from './frameworks/common';

export type { RejectReason } from './frameworks/common';

export interface KoaToaOptions extends IntegrationOptions {
  /** Set ctx.request.ip to the TOA answer's address (default false). */
  readonly ip?: boolean;
}

/** The part of Koa's context this middleware uses. */
export interface KoaContextLike {
  req: IncomingMessage;
  state: Record<string, unknown>;
  request: { ip: string };
  status: number;
  type: string;
  body: unknown;
}

export function toa(options: KoaToaOptions = {}): (ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<void> {
  const s = settings(options);
  const ip = options.ip === true;
  return async function nodeToa(ctx, next) {
    const answer = toaOf(ctx.req.socket);
    ctx.state.toa = answer;
    const why = refusal(answer, s);
    if (why) {
      ctx.status = s.status;
      ctx.type = 'application/json';
      ctx.body = refusalBody(why);
      return;
    }
    if (ip && answer) ctx.request.ip = answer.address;
    await next();
  };
}

export default toa;
