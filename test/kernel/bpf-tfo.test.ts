// Kind 254 and TCP Fast Open on the eBPF backend: the shared case set
// (test/spec/tfo.ts), as test/kernel/kmod-tfo.test.ts runs it for toa.ko.
import { tfoSuite } from '../spec/tfo';
import { bpfFuzzBackend } from '../bpf-support';

tfoSuite(bpfFuzzBackend('k-tfo'));
