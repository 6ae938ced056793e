// Hostile TCP options against the eBPF parser on this guest's kernel.
import { fuzzSuite } from '../bpf-suites';

fuzzSuite('k-fuzz', Number(process.env.TOA_BPF_FUZZ_N ?? 3000));
