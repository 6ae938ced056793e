// Raw getsockopt/getpeername ABI of the eBPF backend on this guest's kernel.
import { abiSuite } from '../bpf-suites';

abiSuite('k-abi');
