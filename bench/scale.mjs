// npm run bench:scale: the kernel module's table at scale (issue #11), in one
// Debian 6.12 guest under QEMU TCG. Not part of CI or of `npm run bench`.
//
//   node bench/scale.mjs [--n 100000] [--mem-mb 4096] [--budget-min 60]
//   TOA_SCALE_N=2000 npm run bench:scale
//
// The guest (bench/lib/scale-job.mjs) holds N concurrent TOA connections
// from IPv4 clients behind crafted IPv4 balancers and prints:
//   - kernel bytes per connection of the module, from the toa_entry slab;
//   - getpeername CPU time over the same 100 held sockets with 100 held,
//     with N held, and with 100 held again (the ratio: table chains at N);
//   - one full read of /proc/net/toa_table: lines and milliseconds.
// Bounded: the guest is killed at the budget; waiting for the machine's one
// guest slot counts against it. Results: bench/results/scale.json.
import fs from 'node:fs';
import path from 'node:path';
import { BenchError, buildTools, cleanupAll, root } from './lib/sys.mjs';
import { guestBench } from './lib/guest.mjs';
import { build as buildLb } from '../test/support/lb/index.mjs';

const argv = process.argv.slice(2);
const flag = (name, dflt) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
const N = Number(flag('--n', process.env.TOA_SCALE_N ?? 100000));
const MEM_MB = Number(flag('--mem-mb', 4096));
const BUDGET_MS = Number(flag('--budget-min', 60)) * 60000;
const T0 = Date.now();
const log = (m) => process.stderr.write(`[scale ${((Date.now() - T0) / 1000).toFixed(0).padStart(4)}s] ${m}\n`);

const fmt = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : String(x));
const ns = (s) => `${fmt(s?.median)} ns (${fmt(s?.min)}-${fmt(s?.max)}, ${s?.n} rounds)`;

function report(r) {
  const a = r.atN ?? {};
  const lines = [
    `guest ${r.kernel}, ${r.cpus} vCPUs, ${MEM_MB} MiB; run ${r.wallSeconds} s (job ${r.seconds} s)`,
    `connections held: ${a.held} of ${r.n} crafted; table entries ${a.entries}; every held one listed: ${r.check?.everyHeldHasEntry}`,
    `crafting: ${fmt(a.crafting?.perSecond, 0)} handshakes/s (${a.crafting?.synAck} SYN-ACKs, ${a.crafting?.segmentsDropped} with the option segment dropped), balancers ${a.crafting?.balancerAddresses?.join(', ')}`,
    `bytes per connection (toa_entry slab, object_size ${a.slab?.after?.objectSize} B, ${a.slab?.after?.objects} objects in ${a.slab?.after?.slabs} slabs): ${fmt(a.bytesPerConnection?.objects)} B (objects x object_size), ${fmt(a.bytesPerConnection?.cachePages)} B (slab pages)`,
    `guest memory used: ${fmt((a.memory?.after?.used ?? NaN) / 2 ** 20, 0)} MiB at ${a.held} (${fmt(a.memory?.usedDeltaPerConnection, 0)} B per connection, all of the kernel's socket state)`,
    `getpeername over the same 100 sockets: ${ns(r.atSmall?.getpeernameNs)} with 100 held, ${ns(a.getpeernameNs)} with ${a.held} held, ${ns(r.afterN?.getpeernameNs)} with 100 again`,
    `ratio at ${a.held} / at 100: ${fmt(r.ratio, 3)}x of the medians (target <= 1.10x), ${fmt(r.ratioMin, 3)}x of the fastest rounds; against 100 afterwards: ${fmt(r.ratioAfter, 3)}x`,
    `the same, each round over its adjacent control round (100 plain loopback sockets): ${fmt(r.ratioPerControl, 3)}x; against 100 afterwards: ${fmt(r.ratioPerControlAfter, 3)}x (toa/control ${fmt(r.atSmall?.getpeernameNs?.perControl?.median, 3)}, ${fmt(a.getpeernameNs?.perControl?.median, 3)}, ${fmt(r.afterN?.getpeernameNs?.perControl?.median, 3)})`,
    `table chains (from the listed cookies, hash_64 into 65,536 buckets): mean ${fmt(r.table?.chains?.meanPerBucket, 2)} per bucket, ${fmt(r.table?.chains?.meanWalkedByLookup, 2)} walked by a lookup, max ${r.table?.chains?.max}; the 100 measured sockets' buckets: ${fmt(r.table?.chains?.measuredSocketsMeanChain, 2)}`,
    `/proc/net/toa_table: ${r.table?.read?.lines} lines (${r.table?.distinctClients} distinct clients, ${r.table?.notCrafted} not crafted) in ${fmt(r.table?.read?.ms)} ms, ${r.table?.read?.reads} read() calls; ${r.atSmall?.table?.lines} lines in ${fmt(r.atSmall?.table?.ms)} ms at 100`,
    `end: ${r.end?.entries} entries left, entry_alloc ${r.end?.entryAlloc} = entry_free ${r.end?.entryFree}, probe_missed ${r.end?.probeMissed}`,
  ];
  const errs = Object.entries(r.errors ?? {});
  if (errs.length) lines.push(`errors: ${errs.map(([k, v]) => `${k}: ${v}`).join('; ')}`);
  return lines.join('\n');
}

async function main() {
  if (process.getuid?.() !== 0) throw new BenchError('EPERM', 'bench:scale needs root (QEMU, the guest job runs as root)');
  if (!Number.isInteger(N) || N < 200) throw new BenchError('EINVAL', `--n / TOA_SCALE_N must be an integer >= 200, got ${N}`);
  const tools = buildTools();
  // the guest's root is the host's, read-only: the emulator's helper is built here
  buildLb();
  log(`${N} connections, guest ${MEM_MB} MiB, budget ${BUDGET_MS / 60000} min`);
  // under TCG: ~100-300 crafted handshakes/s, plus boot, measurements and teardown
  const needsMs = 180000 + N * 8;
  const r = await guestBench(tools, {
    log, deadlineMs: BUDGET_MS - (Date.now() - T0), memMb: MEM_MB,
    job: { script: 'bench/lib/scale-job.mjs', args: [N], needsMs },
  });
  const dir = path.join(root, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'scale.json'), `${JSON.stringify(r, null, 1)}\n`);
  process.stdout.write(`${report(r)}\nJSON in bench/results/scale.json\n`);
  return Object.keys(r.errors ?? {}).length ? 1 : 0;
}

main().then((code) => { cleanupAll(); process.exit(code); }, (e) => {
  log(`FAILED: ${e.message}`);
  cleanupAll();
  process.exit(1);
});
