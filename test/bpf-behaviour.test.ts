// The eBPF backend held to the shared behaviour table on this host's kernel.
// The test process joins a cgroup it created; the programs are attached there
// only (never the machine's root cgroup) and detached afterwards.
import { behaviourSuite } from './spec/behaviour';
import { bpfBackend } from './bpf-support';

behaviourSuite(bpfBackend('behaviour'));
