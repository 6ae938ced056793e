// toa.ko against hostile option bytes: the shared fuzz runner
// (test/spec/fuzz.ts), 20,000 handshakes by default (TOA_FUZZ_N).
import { fuzzSuite } from '../spec/fuzz';
import { kmodBackend, stats } from '../spec/kmod';

fuzzSuite({ ...kmodBackend, counters: async () => stats() }, {
  n: Number(process.env.TOA_FUZZ_N ?? 20000),
  seed: Number(process.env.TOA_FUZZ_SEED ?? 0x70a),
});
