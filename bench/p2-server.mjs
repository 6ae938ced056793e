// P2's server, started twice by bench/run.mjs: `toa` loads node-toa/register
// and reads realRemoteAddress on every connection, `plain` reads Node's
// remoteAddress. Both then close the connection (the load generator waits
// for that FIN). stdin: "stats" -> {"accepted":N,"missing":M,"cpuUs":C}
// (C: this process's CPU time so far); EOF -> exit.
import net from 'node:net';
import { createRequire } from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const variant = process.argv[2];
let read;
if (variant === 'toa') {
  createRequire(import.meta.url)(path.join(root, 'dist/cjs/register.js'));
  read = (s) => s.realRemoteAddress;
} else if (variant === 'plain') {
  read = (s) => s.remoteAddress;
} else {
  throw new Error(`unknown variant ${variant}`);
}

let accepted = 0;
let missing = 0;
const server = net.createServer((s) => {
  accepted++;
  if (read(s) === undefined) missing++;
  s.on('error', () => {});
  s.destroy();
});
server.listen({ port: 0, host: '::', backlog: 4096 }, () => {
  process.stdout.write(`ready ${server.address().port}\n`);
});
createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line === 'stats') {
      const { user, system } = process.cpuUsage();
      process.stdout.write(`${JSON.stringify({ accepted, missing, cpuUs: user + system })}\n`);
    }
  })
  .on('close', () => process.exit(0));
