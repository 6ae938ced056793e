// The published entry points (the exports map, not src/): ESM import and
// CommonJS require both work, share one cache and one set of getters, and
// the bundled .d.ts type-check a strict consumer in both module systems.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';

const run = promisify(execFile);
const root = join(__dirname, '..');
let dir: string;

// A consumer project whose node_modules/node-toa is this package.
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'node-toa-consumer-'));
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(root, join(dir, 'node_modules', 'node-toa'));
  symlinkSync(join(root, 'node_modules', '@types'), join(dir, 'node_modules', '@types'));
  // An application using node-toa/fastify has fastify itself.
  symlinkSync(join(root, 'node_modules', 'fastify'), join(dir, 'node_modules', 'fastify'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const program = (importLines: string) => `${importLines}
const server = net.createServer((s) => {
  const r = toa.lookup(s);
  console.log(JSON.stringify({ real: s.realRemoteAddress, node: s.remoteAddress, source: r.source, same: r === toa.lookup(s) }));
  s.destroy(); server.close();
}).listen(0, '127.0.0.1', () => net.connect(server.address().port, '127.0.0.1').on('error', () => {}));
`;

it('ESM: import "node-toa" and "node-toa/register"', async () => {
  writeFileSync(join(dir, 'esm.mjs'), program(
    "import net from 'node:net';\nimport 'node-toa/register';\nimport * as toa from 'node-toa';\nimport def from 'node-toa';\nif (def.lookup !== toa.lookup) throw new Error('default export differs');"));
  const { stdout } = await run(process.execPath, ['esm.mjs'], { cwd: dir });
  expect(JSON.parse(stdout)).toEqual({ real: '127.0.0.1', node: '127.0.0.1', source: 'peer', same: true });
});

it('CJS: require("node-toa") and "node-toa/register"', async () => {
  writeFileSync(join(dir, 'cjs.cjs'), program(
    "const net = require('node:net');\nrequire('node-toa/register');\nconst toa = require('node-toa');"));
  const { stdout } = await run(process.execPath, ['cjs.cjs'], { cwd: dir });
  expect(JSON.parse(stdout)).toEqual({ real: '127.0.0.1', node: '127.0.0.1', source: 'peer', same: true });
});

it('loading both forms in one process gives one implementation', async () => {
  writeFileSync(join(dir, 'both.mjs'), `
import { createRequire } from 'node:module';
import * as esm from 'node-toa';
const cjs = createRequire(import.meta.url)('node-toa');
console.log(JSON.stringify({ same: esm.lookup === cjs.lookup }));`);
  const { stdout } = await run(process.execPath, ['both.mjs'], { cwd: dir });
  expect(JSON.parse(stdout)).toEqual({ same: true });
});

it('node-toa/bpf: the eBPF loader API, from ESM and CommonJS', async () => {
  writeFileSync(join(dir, 'bpf.mjs'), `
import { createRequire } from 'node:module';
import * as esm from 'node-toa/bpf';
const cjs = createRequire(import.meta.url)('node-toa/bpf');
console.log(JSON.stringify({ same: esm.attach === cjs.attach, fns: ['attach', 'detach', 'status', 'configure'].every((f) => typeof esm[f] === 'function') }));`);
  const { stdout } = await run(process.execPath, ['bpf.mjs'], { cwd: dir });
  expect(JSON.parse(stdout)).toEqual({ same: true, fns: true });
});

it('framework and metrics subpaths, from ESM and CommonJS', async () => {
  writeFileSync(join(dir, 'frameworks.mjs'), `
import { createRequire } from 'node:module';
import fastifyPlugin from 'node-toa/fastify';
import { toa as expressToa } from 'node-toa/express';
import koaToa from 'node-toa/koa';
import * as metrics from 'node-toa/metrics';
const require = createRequire(import.meta.url);
console.log(JSON.stringify({
  fastify: typeof fastifyPlugin, pluginName: fastifyPlugin[Symbol.for('fastify.display-name')],
  sameFastify: fastifyPlugin === require('node-toa/fastify').default,
  express: typeof expressToa(), sameExpress: expressToa === require('node-toa/express').toa,
  koa: typeof koaToa(), metrics: [typeof metrics.snapshot, typeof metrics.register],
}));`);
  const { stdout } = await run(process.execPath, ['frameworks.mjs'], { cwd: dir });
  expect(JSON.parse(stdout)).toEqual({
    fastify: 'function', pluginName: 'node-toa', sameFastify: true, express: 'function', sameExpress: true, koa: 'function', metrics: ['function', 'function'],
  });
});

// The third is the classic CommonJS setup (module commonjs; its default
// resolution, node10, ignores "exports": subpath types need typesVersions),
// with esModuleInterop as `tsc --init` sets it (fastify's own dependency
// pino needs it there).
it.each([
  ['module', 'nodenext', 'nodenext', 'consumer.mts'],
  ['commonjs', 'node16', 'node16', 'consumer.cts'],
  ['commonjs', 'commonjs', 'node10', 'consumer.ts'],
])('types: strict %s consumer (module %s, resolution %s) type-checks, and misuse does not', async (_kind, module, resolution, file) => {
  const good = `import * as net from 'node:net';
import 'node-toa/register';
import { attach } from 'node-toa/bpf';
import nodeToa from 'node-toa/fastify';
import { toa as expressToa } from 'node-toa/express';
import { toa as koaToa } from 'node-toa/koa';
import { snapshot } from 'node-toa/metrics';
import type { FastifyRequest } from 'fastify';
const attachFn: (...args: never[]) => unknown = attach;
declare const request: FastifyRequest;
const fromFastify: string | undefined = request.toa?.address;
const plugins = [nodeToa, expressToa({ ip: true, reject: ['rejected'], rejectStatus: 451 }), koaToa({ reject: ['untrusted'] })];
const counted: Promise<number> = snapshot().then((m) => m.process.toa + m.process.rejected);
import { lookup, lookupFd, getToaInfo, type LookupResult, type LookupSource, type ToaError, type ToaSystemError } from 'node-toa';
// Error codes are unions a switch can narrow, not plain strings.
type IsPlainString<T> = string extends T ? true : false;
const codesAreUnions: [IsPlainString<ToaError['code']>, IsPlainString<ToaSystemError['code']>] = [false, false];
declare const s: net.Socket;
const r: LookupResult = lookup(s);
const src: LookupSource = r.source;
const a: string | undefined = s.realRemoteAddress;
const p: number | undefined = s.realRemotePort;
const f: 'IPv4' | 'IPv6' | undefined = s.realRemoteFamily;
const proxy: string | undefined = r.proxy?.address;
const fd: number = lookupFd(3).port;
const trusted: boolean = getToaInfo(s).trusted;
export { src, a, p, f, proxy, fd, trusted, attachFn, codesAreUnions, fromFastify, plugins, counted };
`;
  writeFileSync(join(dir, file), good);
  const tsc = join(root, 'node_modules/typescript/bin/tsc');
  const args = ['--noEmit', '--strict', '--module', module, '--moduleResolution', resolution, '--types', 'node',
    ...(resolution === 'node10' ? ['--esModuleInterop'] : []), file];
  await run(process.execPath, [tsc, ...args], { cwd: dir });
  writeFileSync(join(dir, file), `${good}\nconst wrong: number = lookup({} as net.Socket).address;\n`);
  // The good run above checked every declaration file; this one only needs
  // the misuse reported, so it skips them (a third of the time).
  await expect(run(process.execPath, [tsc, '--skipLibCheck', ...args], { cwd: dir })).rejects.toMatchObject({
    stdout: expect.stringContaining("Type 'string' is not assignable to type 'number'"),
  });
}, 180_000);
