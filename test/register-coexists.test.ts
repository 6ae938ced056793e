// node-toa/register in a process that also holds another copy of node-toa
// (two versions in node_modules, a bundle) or another library's
// realRemote* properties: nothing is overwritten silently, a conflict is
// said once as a process warning, and nothing throws at import.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { copyPackage } from './fixtures/package-copy';

const run = promisify(execFile);
let work: string;
beforeAll(() => { work = mkdtempSync(join(tmpdir(), 'node-toa-copies-')); });
afterAll(() => rmSync(work, { recursive: true, force: true }));

// Prints what the getters, both copies' lookup() and process warnings say
// for one loopback connection.
const probe = (prelude: string) => `
const net = require('node:net');
const warnings = [];
process.on('warning', (w) => warnings.push({ code: w.code, message: w.message }));
${prelude}
const srv = net.createServer((s) => {
  const out = { real: s.realRemoteAddress, port: s.realRemotePort, remote: s.remoteAddress };
  for (const [name, lib] of Object.entries(libs)) out[name] = lib.lookup(s).address;
  s.destroy(); srv.close();
  setImmediate(() => console.log(JSON.stringify({ ...out, warnings })));
}).listen(0, '127.0.0.1', () => net.connect(srv.address().port, '127.0.0.1').on('error', () => {}));
`;

async function runProbe(name: string, prelude: string) {
  const dir = join(work, name);
  copyPackage(dir, { name: 'node-toa' });
  copyPackage(dir, { name: 'other-toa', version: '9.9.9' });
  copyPackage(dir, { name: 'same-toa' });
  writeFileSync(join(dir, 'probe.cjs'), probe(prelude));
  const { stdout } = await run(process.execPath, ['probe.cjs'], { cwd: dir, timeout: 20_000 });
  return JSON.parse(stdout);
}

it('two copies of the same version: one set of getters, no warning', async () => {
  const r = await runProbe('same', `
require('node-toa/register'); require('same-toa/register');
const libs = { a: require('node-toa'), b: require('same-toa') };`);
  expect(r).toMatchObject({ real: '127.0.0.1', remote: '127.0.0.1', a: '127.0.0.1', b: '127.0.0.1', warnings: [] });
});

it('two different versions: each copy answers, and the second register warns once naming both', async () => {
  const r = await runProbe('versions', `
require('node-toa/register'); require('other-toa/register'); require('other-toa/register');
const libs = { a: require('node-toa'), b: require('other-toa') };`);
  expect(r).toMatchObject({ real: '127.0.0.1', a: '127.0.0.1', b: '127.0.0.1' });
  expect(r.warnings).toEqual([{ code: 'NODE_TOA_REGISTER_CONFLICT', message: expect.stringMatching(/9\.9\.9.*0\.1\.0|0\.1\.0.*9\.9\.9/) }]);
});

it("another library's configurable getter is kept and named in a warning", async () => {
  const r = await runProbe('configurable', `
Object.defineProperty(net.Socket.prototype, 'realRemoteAddress', { configurable: true, get() { return 'theirs'; } });
require('node-toa/register');
const libs = { a: require('node-toa') };`);
  expect(r.real).toBe('theirs');
  expect(r.a).toBe('127.0.0.1');
  expect(r.warnings).toEqual([{ code: 'NODE_TOA_REGISTER_CONFLICT', message: expect.stringContaining('realRemoteAddress') }]);
});

it('a non-configurable property of another library: no crash at import, and a warning', async () => {
  const r = await runProbe('frozen', `
Object.defineProperty(net.Socket.prototype, 'realRemotePort', { configurable: false, value: 1 });
require('node-toa/register');
const libs = { a: require('node-toa') };`);
  expect(r.port).toBe(1);
  expect(r.a).toBe('127.0.0.1');
  expect(r.warnings).toEqual([{ code: 'NODE_TOA_REGISTER_CONFLICT', message: expect.stringContaining('realRemotePort') }]);
});

it('register() again once the conflict is gone installs the getters (a failed attempt is not marked done)', async () => {
  const r = await runProbe('retry', `
Object.defineProperty(net.Socket.prototype, 'realRemoteAddress', { configurable: true, get() { return 'theirs'; } });
const { register } = require('node-toa/register');
delete net.Socket.prototype.realRemoteAddress;
register();
const libs = { a: require('node-toa') };`);
  expect(r.real).toBe('127.0.0.1');
  expect(r.warnings).toHaveLength(1);
});
