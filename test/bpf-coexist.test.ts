// Other programs' getsockopt calls under the attached programs, on this
// host's kernel: identical to a cgroup without them.
import { coexistSuite } from './bpf-coexist-suite';

coexistSuite('coexist');
