// Other programs' getsockopt calls under the attached programs, on this
// guest's kernel (5.10: the kernel EFAULTs answers over a page unless every
// program passes them through with optlen 0).
import { coexistSuite } from '../bpf-coexist-suite';

coexistSuite('k-coexist');
