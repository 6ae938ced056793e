// The loader on this guest's kernel: CLI, coexistence, placement, TFO,
// a Node server child using the addon, clean detach.
import { lifecycleSuite } from '../bpf-suites';

lifecycleSuite('k-life');
