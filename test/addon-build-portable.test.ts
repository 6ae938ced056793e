// binding.gyp as node-gyp sees it on a user's machine: Linux-only sources
// (tools that run node-gyp directly on macOS or Windows must build nothing),
// and no -Werror unless this project asks for it (a newer compiler's new
// warning must not fail a user's install).
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';

const run = promisify(execFile);
const root = join(__dirname, '..');
const nodeGyp = join(root, 'node_modules/node-gyp/bin/node-gyp.js');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'node-toa-gyp-'));
  cpSync(join(root, 'binding.gyp'), join(dir, 'binding.gyp'));
  cpSync(join(root, 'native'), join(dir, 'native'), { recursive: true });
  mkdirSync(join(dir, 'kmod'));
  cpSync(join(root, 'kmod/uapi'), join(dir, 'kmod/uapi'), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The generated makefile of the toa target after `node-gyp configure`. */
async function configure(...gypArgs: string[]): Promise<string> {
  rmSync(join(dir, 'build'), { recursive: true, force: true });
  await run(process.execPath, [nodeGyp, 'configure', ...(gypArgs.length ? ['--', ...gypArgs] : [])], { cwd: dir, timeout: 60_000 });
  return readFileSync(join(dir, 'build/toa.target.mk'), 'utf8');
}

it('on Linux: compiles the sources, warnings on, not fatal', async () => {
  const mk = await configure();
  expect(mk).toContain('native/socket_query.o');
  expect(mk).toContain('-Wall');
  expect(mk).not.toContain('-Werror');
});

it('npm run build:native (this project) turns warnings into errors', async () => {
  const script = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts['build:native'] as string;
  const gypArgs = script.split(' -- ')[1]?.split(' ') ?? [];
  expect(gypArgs).toEqual(['-Dwerror=true']);
  expect(await configure(...gypArgs)).toContain('-Werror');
});

it.each(['mac', 'win'])('OS=%s: nothing to compile', async (os) => {
  const mk = await configure(`-DOS=${os}`);
  expect(mk).not.toMatch(/native\/\w+\.o/);
});
