// Runs inside the QEMU guest (started by bench/lib/guest.mjs): the kernel
// halves of P1/P3/P4 on a stock Debian kernel, for the eBPF backend and for
// the kernel module, one after the other (the backend refuses to attach
// while the module is loaded). Writes JSON to argv[3]; every section that
// fails is recorded with its reason and the next one still runs.
//
//   node bench/guest-job.mjs TOA_KO TOOLS_JSON OUT_JSON QUICK(0|1)
import fs from 'node:fs';
import os from 'node:os';
import { cleanupAll } from './lib/sys.mjs';
import * as host from './lib/host.mjs';
import { Kmod, p3PeernameKmod, p3SetupKmod, p4Kmod } from './lib/kmod.mjs';

const [ko, toolsJson, outFile, quickArg] = process.argv.slice(2);
const tools = JSON.parse(toolsJson);
const quick = quickArg === '1';
const R = (n) => (quick ? Math.max(2, n >> 1) : n);
const out = { kernel: os.release(), cpus: os.cpus().length, errors: {} };
const t0 = Date.now();
const log = (m) => process.stderr.write(`[guest ${((Date.now() - t0) / 1000).toFixed(0)}s] ${m}\n`);
const save = () => fs.writeFileSync(outFile, `${JSON.stringify(out, null, 1)}\n`);

async function step(name, fn) {
  log(`${name} ...`);
  try {
    out[name] = await fn();
  } catch (e) {
    out.errors[name] = e.message;
    log(`${name} FAILED: ${e.message}`);
  }
  save();
}

async function main() {
  // under TCG every syscall is emulated: fewer, shorter rounds than on the host
  let env;
  await step('env', async () => {
    env = await host.hostEnv(tools);
    return { cgroups: env.cg };
  });
  if (!env) return;
  const bpf = {};
  await step('bpf-setup', async () => host.p3SetupBpf(env, { rounds: R(8), ms: 600, conc: 8 }));
  await step('bpf-peername', async () => host.p3PeernameBpf(env, { rounds: R(8), conns: 50, iters: 10000 }));
  await step('bpf-memory', async () => host.p4Bpf(env, { rounds: R(2), conns: 1000 }));
  await env.backend.detach();
  bpf.setup = out['bpf-setup'];
  bpf.peername = out['bpf-peername'];
  bpf.memory = out['bpf-memory'];
  out['bpf-guest'] = bpf;

  const kmod = new Kmod(ko);
  const km = {};
  await step('kmod-setup', () => p3SetupKmod(kmod, env, { rounds: R(8), ms: 600, conc: 8 }));
  await step('kmod-peername', () => p3PeernameKmod(kmod, env, { rounds: R(8), conns: 50, iters: 10000 }));
  await step('memory', () => p4Kmod(kmod, env, { conns: 1000 }));
  await step('p1-kmod', async () => {
    await kmod.set(true);
    try {
      return await host.p1Kmod({ rounds: R(4), k: 40 });
    } finally {
      await kmod.set(false);
    }
  });
  km.setup = out['kmod-setup'];
  km.peername = out['kmod-peername'];
  out.kmod = km;
}

main().catch((e) => { out.errors.main = e.message; }).finally(() => {
  out.seconds = Math.round((Date.now() - t0) / 1000);
  save();
  cleanupAll();
  process.exit(0);
});
