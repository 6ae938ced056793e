// Kind 254 and TCP Fast Open on toa.ko: the shared case set
// (test/spec/tfo.ts), as test/kernel/bpf-tfo.test.ts runs it for eBPF.
import { tfoSuite } from '../spec/tfo';
import { kmodBackend, loaded, rmmod, stats } from '../spec/kmod';

tfoSuite({
  ...kmodBackend,
  // a fresh load with these parameters, whatever an earlier file left loaded
  async enable(c) {
    if (loaded()) rmmod();
    await kmodBackend.enable(c);
  },
  counters: async () => stats(),
});
