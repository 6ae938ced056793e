// node-toa/fastify: request.toa (the lookup() answer) on every request, and
// optionally a refusal of requests whose TOA was forged or unverifiable.
//
// request.ip is Fastify's: the providers rewrite getpeername, so the socket
// address Fastify starts from is already the TOA client, and trustProxy then
// walks X-Forwarded-For from there. The layer-4 balancer is never a hop of
// its own, so it is never counted twice.
import fp from 'fastify-plugin';
import type { FastifyPluginCallback } from 'fastify';
import type { LookupResult } from './lookup';
import { type IntegrationOptions, refusal, refusalBody, settings, toaOf } from './frameworks/common';

export type { IntegrationOptions as FastifyToaOptions, RejectReason } from './frameworks/common';

declare module 'fastify' {
  interface FastifyRequest {
    /** lookup() of the request's connection; undefined when it has no answer. */
    toa: LookupResult | undefined;
  }
}

const nodeToa: FastifyPluginCallback<IntegrationOptions> = (fastify, options, done) => {
  const s = settings(options);
  fastify.decorateRequest('toa', undefined);
  fastify.addHook('onRequest', (request, reply, next) => {
    const toa = toaOf(request.raw.socket);
    request.toa = toa;
    const why = refusal(toa, s);
    if (why) {
      reply.code(s.status).type('application/json').send(refusalBody(why));
      return;
    }
    next();
  });
  done();
};

const plugin = fp(nodeToa, { fastify: '>=4', name: 'node-toa' });
export { plugin as nodeToa };
export default plugin;
