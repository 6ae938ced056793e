// The README's first command: `npm run demo`. After `npm ci` (and here after
// `npm run build`) it builds nothing: the addon npm ci built stays as is.
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const root = join(__dirname, '..');

it('npm run demo shows remoteAddress (balancer) next to realRemoteAddress (client)', async () => {
  const addon = join(root, 'build/Release/toa.node');
  const before = statSync(addon).mtimeMs;
  const { stdout } = await promisify(execFile)('npm', ['run', 'demo'], { cwd: root, timeout: 60_000 });
  expect(stdout).not.toContain('gyp info');
  expect(statSync(addon).mtimeMs).toBe(before);
  expect(stdout).toMatch(/IPv4 client via IPv4 balancer\s+198\.51\.100\.7:51000\s+::ffff:203\.0\.113\.\d+\s+::ffff:198\.51\.100\.7\s+51000/);
  expect(stdout).toMatch(/NAT64: IPv6 client via IPv4 balancer\s+\S+\s+::ffff:203\.0\.113\.\d+\s+2001:db8:cafe::7\s+52000/);
  expect(stdout).toMatch(/direct client forging TOA.*TOA ignored: untrusted/);
  expect(stdout).toContain('The server saw every real client; the forged option was ignored.');
}, 90_000);
