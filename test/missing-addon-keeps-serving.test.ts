// A Linux install whose addon cannot be loaded (no prebuild fits, installed
// with --ignore-scripts, or a broken binary): the published package, copied
// without build/ and prebuilds/, runs in a child process. The server must
// keep serving, the getters must answer undefined (never the balancer's
// address, never an exception), and lookup() must say why with a code.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { copyPackage, root } from './fixtures/package-copy';

const run = promisify(execFile);
let work: string;

const server = `
const http = require('node:http');
require('node-toa/register');
const { lookup } = require('node-toa');
const seen = [];
const srv = http.createServer((req, res) => {
  let code;
  try { lookup(req.socket); } catch (e) { code = e.code; }
  res.end(JSON.stringify({ real: req.socket.realRemoteAddress, port: req.socket.realRemotePort, family: req.socket.realRemoteFamily, code }));
});
srv.listen(0, '127.0.0.1', async () => {
  const url = 'http://127.0.0.1:' + srv.address().port + '/';
  for (let i = 0; i < 3; i++) seen.push(await (await fetch(url)).json());
  srv.close();
  console.log(JSON.stringify(seen));
});
`;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'node-toa-noaddon-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

it('register + getters: the server keeps serving, getters are undefined, lookup() throws ERR_TOA_NATIVE_MISSING', async () => {
  const app = join(work, 'app');
  copyPackage(app, { addon: false });
  writeFileSync(join(app, 'server.cjs'), server);
  const { stdout, stderr } = await run(process.execPath, ['server.cjs'], { cwd: app, timeout: 20_000 });
  expect(JSON.parse(stdout)).toEqual(Array(3).fill({ code: 'ERR_TOA_NATIVE_MISSING' }));
  // Said once, loudly, with the way out.
  expect(stderr.match(/ERR_TOA_NATIVE_MISSING/g)).toHaveLength(1);
  expect(stderr).toContain('npm rebuild node-toa');
});

// node-toa inside another project that has its own binding.gyp and addon
// (a monorepo, a native app vendoring node-toa's dist/ without its
// binding.gyp): that addon is not ours.
it('a binding.gyp and build/ of an enclosing project are never loaded as the addon', async () => {
  const outer = join(work, 'outer');
  mkdirSync(join(outer, 'build', 'Release'), { recursive: true });
  writeFileSync(join(outer, 'binding.gyp'), '{ "targets": [] }\n');
  copyFileSync(join(root, 'build/Release/toa.node'), join(outer, 'build/Release/other.node'));
  const app = join(outer, 'app');
  copyPackage(app, { addon: false, bindingGyp: false });
  writeFileSync(join(app, 'server.cjs'), server);
  const { stdout } = await run(process.execPath, ['server.cjs'], { cwd: app, timeout: 20_000 });
  expect(JSON.parse(stdout)[0]).toEqual({ code: 'ERR_TOA_NATIVE_MISSING' });
});
