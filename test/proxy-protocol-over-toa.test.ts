// A connection carrying both a TOA option and a PROXY header: the header
// wins. The chain this models: client -> PROXY balancer P -> full-NAT TOA
// balancer F -> server. F's option names P (F's own client); P's header
// names the client. The eBPF backend (attached to a cgroup this test made)
// rewrites getpeername to P, so P is the peer acceptProxyProtocol checks
// against `trusted` and reports as `proxy`. The LB emulator plays F.
import { once } from 'node:events';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lookup } from '../src/index';
import type { LookupResult } from '../src/index';
import '../src/register';
import { acceptProxyProtocol, encodeProxyHeader } from '../src/proxy-protocol/index';
import { bpfBackend } from './bpf-support';
import { createLoadBalancer } from './support/lb/index.mjs';

const backend = bpfBackend('pp-toa');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
let lb: any;
beforeAll(async () => {
  await backend.enable({ ipv4Kinds: [200], ipv6Kinds: [253], trusted: [], ports: [] });
  lb = await createLoadBalancer();
}, 30_000);
afterAll(async () => {
  await lb?.close();
  await backend.disable();
});

const P = { address: '198.51.100.7', port: 51000 };
const CLIENT = { address: '192.0.2.44', port: 40000 };

async function through(opts: { wrapped: boolean; trusted?: string[]; toa: typeof P; header?: Buffer }) {
  const seen: { result?: LookupResult; real?: string; data?: string }[] = [];
  const server = net.createServer((s) => {
    const entry: (typeof seen)[number] = { result: lookup(s), real: s.realRemoteAddress };
    seen.push(entry);
    s.once('data', (d) => { entry.data = d.toString(); s.end('ok'); });
  });
  const handle = opts.wrapped ? acceptProxyProtocol(server, { trusted: opts.trusted ?? [`${P.address}/32`], timeoutMs: 2000 }) : undefined;
  server.listen(0, '::');
  await once(server, 'listening');
  try {
    const conn = await lb.connect({ port: (server.address() as net.AddressInfo).port, family: 4, toa: { kind: 200, ...opts.toa }, placement: 'ack' });
    await conn.send(Buffer.concat([opts.header ?? Buffer.alloc(0), Buffer.from('ping')]));
    await conn.recvAll().catch(() => undefined);
    await conn.close().catch(() => undefined);
  } finally {
    server.close();
  }
  return { seen, handle };
}

const header = encodeProxyHeader({ version: 2, source: CLIENT, destination: { address: '203.0.113.1', port: 443 } });

describe('TOA option and PROXY header on one connection', () => {
  it('TOA alone (no wrapper): the option answers, source toa', async () => {
    const { seen } = await through({ wrapped: false, toa: P });
    expect(seen[0].result).toMatchObject({ address: `::ffff:${P.address}`, port: P.port, source: 'toa' });
  });

  it('both: the header wins; the balancer TOA named is the proxy, and the bytes after the header arrive', async () => {
    const { seen, handle } = await through({ wrapped: true, toa: P, header });
    expect(seen).toHaveLength(1);
    expect(seen[0].result).toMatchObject({
      address: `::ffff:${CLIENT.address}`, port: CLIENT.port, source: 'proxy-protocol',
      proxy: { address: `::ffff:${P.address}`, port: P.port },
    });
    expect(seen[0].real).toBe(`::ffff:${CLIENT.address}`);
    expect(seen[0].data).toBe('ping');
    expect(handle?.counters.proxied).toBe(1);
  });

  it('a header sent by a TOA client outside trusted is refused', async () => {
    const { seen, handle } = await through({ wrapped: true, toa: { address: '198.51.100.8', port: 51001 }, header });
    expect(seen).toHaveLength(0);
    expect(handle?.counters.untrusted).toBe(1);
  });
});
