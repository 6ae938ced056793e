// The README's first command: `npm run demo` (build + scripts/demo.mjs).
// Runs the script itself (the build already happened in `npm test`).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

it('npm run demo shows remoteAddress (balancer) next to realRemoteAddress (client)', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [join(__dirname, '../scripts/demo.mjs')], { timeout: 60_000 });
  expect(stdout).toMatch(/IPv4 client via IPv4 balancer\s+198\.51\.100\.7:51000\s+::ffff:203\.0\.113\.\d+\s+::ffff:198\.51\.100\.7\s+51000/);
  expect(stdout).toMatch(/NAT64: IPv6 client via IPv4 balancer\s+\S+\s+::ffff:203\.0\.113\.\d+\s+2001:db8:cafe::7\s+52000/);
  expect(stdout).toMatch(/direct client forging TOA.*TOA ignored: untrusted/);
  expect(stdout).toContain('The server saw every real client; the forged option was ignored.');
}, 90_000);
