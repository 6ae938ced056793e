// P1, one process: the cost of asking for the address on accepted sockets.
// Run by bench/run.mjs; prints one JSON line per round, then {"done":...}.
//
//   node bench/p1-addon.mjs plain ROUNDS K   loopback clients, no TOA provider
//   node bench/p1-addon.mjs lb ROUNDS K      clients from the LB emulator with
//                                            a TOA option; run.mjs starts this
//                                            process inside a cgroup that has
//                                            the eBPF backend attached
//
// Each round accepts 3K fresh connections and deals them round-robin into
// three sets. On each set one way of reading the address is timed, its first
// read (the syscall) and then repeated reads (the cache):
//   remote  socket.remoteAddress            (Node's own getpeername + cache)
//   lookup  lookup(socket).address          (node-toa, fresh query)
//   real    socket.realRemoteAddress        (node-toa/register getter)
// The three sets are timed in a rotating order so none is always first.
//
// node-toa/register captures the answer when the server emits 'connection'.
// To time a *first* read, that captured answer (the kCache symbol slot) is
// deleted from every socket of every set before timing, so all three sets
// see the same object shapes.
import net from 'node:net';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { lookup } = require(path.join(root, 'dist/cjs/index.js'));
require(path.join(root, 'dist/cjs/register.js'));
const kCache = Symbol.for('node-toa.cache.v2');

const [mode, roundsArg, kArg] = process.argv.slice(2);
const ROUNDS = Number(roundsArg);
const K = Number(kArg);
const CACHED_PASSES = 50;
const WARMUP = 2;

function fail(msg) {
  process.stdout.write(`${JSON.stringify({ error: msg })}\n`);
  process.exit(1);
}

const server = net.createServer({ noDelay: true });
let accepted = [];
let wantAccepted = 0;
let onAllAccepted = () => {};
server.on('connection', (s) => {
  s.on('error', () => {});
  accepted.push(s);
  if (accepted.length === wantAccepted) onAllAccepted();
});
await new Promise((r) => server.listen(0, '::', r));
const port = server.address().port;

let lb;
let expectPrefix;
if (mode === 'lb') {
  const { createLoadBalancer } = await import(path.join(root, 'test/support/lb/index.mjs'));
  lb = await createLoadBalancer();
  expectPrefix = '::ffff:192.0.2.';
} else if (mode !== 'plain') {
  fail(`unknown mode ${mode}`);
}

async function openConnections(n) {
  accepted = [];
  wantAccepted = n;
  const all = new Promise((r) => { onAllAccepted = r; });
  let clients;
  if (lb) {
    clients = await Promise.all(Array.from({ length: n }, (_, i) => lb.connect({
      port, family: 4, toa: { kind: 200, address: `192.0.2.${1 + (i % 250)}`, port: 1000 + i }, placement: 'all',
    })));
  } else {
    clients = await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const c = net.connect({ port, host: '127.0.0.1', noDelay: true }, () => resolve(c));
      c.on('error', reject);
    })));
  }
  const timer = setTimeout(() => fail(`only ${accepted.length}/${n} connections accepted in 20 s`), 20000);
  await all;
  clearTimeout(timer);
  // let the diagnostics-channel capture run for the last socket too
  await new Promise((r) => setImmediate(r));
  return clients;
}

async function closeConnections(clients, servers) {
  for (const s of servers) s.destroy();
  if (lb) await Promise.all(clients.map((c) => c.close({ rst: true })));
  else for (const c of clients) c.destroy();
}

const readers = {
  remote: (s) => s.remoteAddress,
  lookup: (s) => lookup(s).address,
  real: (s) => s.realRemoteAddress,
};
const NAMES = Object.keys(readers);

// Sets are timed in chunks, the three readers taking turns chunk by chunk;
// a reader's figure for the round is its median chunk, so a GC pause or an
// interrupt landing in one chunk does not move it.
const CHUNK = 20;

function median(v) {
  const a = [...v].sort((x, y) => x - y);
  return a.length % 2 ? a[a.length >> 1] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
}

let sink = 0;
function timeChunk(read, sockets, from, passes) {
  const to = Math.min(from + CHUNK, sockets.length);
  const t0 = process.hrtime.bigint();
  for (let p = 0; p < passes; p++) {
    for (let i = from; i < to; i++) sink += read(sockets[i]).length;
  }
  return Number(process.hrtime.bigint() - t0) / ((to - from) * passes);
}

function timeSets(order, sets, passes) {
  const chunks = Object.fromEntries(order.map((n) => [n, []]));
  for (let from = 0; from < K; from += CHUNK) {
    for (const name of order) chunks[name].push(timeChunk(readers[name], sets[name], from, passes));
  }
  return Object.fromEntries(order.map((n) => [n, median(chunks[n])]));
}

for (let round = 0; round < ROUNDS + WARMUP; round++) {
  const clients = await openConnections(3 * K);
  const sets = { remote: [], lookup: [], real: [] };
  accepted.forEach((s, i) => sets[NAMES[i % 3]].push(s));
  for (const s of accepted) delete s[kCache];
  const order = NAMES.map((_, i) => NAMES[(i + round) % 3]);
  const first = timeSets(order, sets, 1);
  const cached = timeSets(order, sets, CACHED_PASSES);
  if (sink === 0) fail('no address read');

  // the numbers are only worth something if the answers are right
  const probe = sets.lookup[0];
  const res = lookup(probe);
  if (lb) {
    if (res.source !== 'toa' || !res.address.startsWith(expectPrefix)) {
      fail(`expected a TOA answer ${expectPrefix}x, got ${JSON.stringify(res)}`);
    }
    if (!sets.remote[0].remoteAddress.startsWith(expectPrefix)) {
      fail(`getpeername not rewritten by the provider: ${sets.remote[0].remoteAddress}`);
    }
  } else if (res.source !== 'peer' || res.address !== probe.remoteAddress) {
    fail(`expected the peer without a provider, got ${JSON.stringify(res)}`);
  }
  await closeConnections(clients, accepted);
  // the first rounds warm the JIT and the addon's caches; they are not reported
  if (round >= WARMUP) process.stdout.write(`${JSON.stringify({ round, first, cached })}\n`);
}
if (lb) await lb.close();
server.close();
process.stdout.write(`${JSON.stringify({ done: true })}\n`);
