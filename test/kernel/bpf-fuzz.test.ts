// Hostile TCP options against the eBPF parser on this guest's kernel, through
// the backend-parameterised runner (test/spec/fuzz.ts).
import { fuzzSuite } from '../spec/fuzz';
import { bpfFuzzBackend } from '../bpf-support';

fuzzSuite(bpfFuzzBackend('k-fuzz'), { n: Number(process.env.TOA_BPF_FUZZ_N ?? 3000), seed: 0x70b });
