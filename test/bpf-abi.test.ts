// Raw ABI of the eBPF backend on this host's kernel, read by a server process
// placed in the test's own cgroup (python: any getsockopt level/size).
import { abiSuite } from './bpf-suites';

abiSuite('abi');
