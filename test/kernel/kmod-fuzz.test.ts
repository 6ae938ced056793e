// toa.ko against hostile option bytes: the shared fuzz runner
// (test/spec/fuzz.ts), 8,000 handshakes per kernel by default (TOA_FUZZ_N;
// 20,000 took 62 s of the 5.10 guest, which the CI budget no longer has).
import { fuzzSuite } from '../spec/fuzz';
import { kmodBackend, stats } from '../spec/kmod';

fuzzSuite({ ...kmodBackend, counters: async () => stats() }, {
  n: Number(process.env.TOA_FUZZ_N ?? 8000),
  seed: Number(process.env.TOA_FUZZ_SEED ?? 0x70a),
});
