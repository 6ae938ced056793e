// Hostile TCP options against the eBPF parser on this host's kernel, through
// the backend-parameterised runner (test/spec/fuzz.ts).
import { fuzzSuite } from './spec/fuzz';
import { bpfFuzzBackend } from './bpf-support';

fuzzSuite(bpfFuzzBackend('fuzz'), { n: Number(process.env.TOA_FUZZ_N ?? 2000), seed: 0x70b });
