// The loader on this host's kernel: CLI, coexistence with other programs,
// placement, TFO exclusion, a Node server child using the addon, clean detach.
import { lifecycleSuite } from './bpf-suites';

lifecycleSuite('life');
