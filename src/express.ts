// node-toa/express: a connect-style middleware (Express, connect, plain
// http servers that call middleware). req.toa is the lookup() answer;
// `ip: true` makes req.ip that answer's address.
//
// Without `ip`, req.ip is Express's own: the providers rewrite getpeername,
// so on :: listeners it already is the TOA client. `ip: true` matters for
// NAT64 clients on 0.0.0.0 listeners (an AF_INET socket cannot show an IPv6
// peer) and for reads after the client reset. It replaces Express's value
// and so its 'trust proxy' handling: use one or the other for this hop.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LookupResult } from './lookup';
import { type IntegrationOptions, refusal, refusalBody, settings, toaOf } from './frameworks/common';

export type { RejectReason } from './frameworks/common';

export interface ExpressToaOptions extends IntegrationOptions {
  /** Define req.ip as the TOA answer's address (default false). */
  readonly ip?: boolean;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** lookup() of the request's connection (node-toa/express); undefined when it has no answer. */
      toa?: LookupResult;
    }
  }
}

export type Middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

export function toa(options: ExpressToaOptions = {}): Middleware {
  const s = settings(options);
  const ip = options.ip === true;
  return function nodeToa(req, res, next) {
    const answer = toaOf(req.socket);
    (req as IncomingMessage & { toa?: LookupResult }).toa = answer;
    const why = refusal(answer, s);
    if (why) {
      res.statusCode = s.status;
      res.setHeader('content-type', 'application/json');
      res.end(refusalBody(why));
      return;
    }
    if (ip && answer) Object.defineProperty(req, 'ip', { configurable: true, enumerable: true, writable: true, value: answer.address });
    next();
  };
}

export default toa;
