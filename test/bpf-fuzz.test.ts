// Hostile TCP options against the eBPF parser on this host's kernel.
import { fuzzSuite } from './bpf-suites';

fuzzSuite('fuzz', Number(process.env.TOA_FUZZ_N ?? 2000));
