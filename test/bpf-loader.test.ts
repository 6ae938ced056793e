// The loader on this host's kernel: upgrade under load, orphans, foreign
// pins, non-root users, the cgroup root, the systemd unit.
import { loaderSuite } from './bpf-loader-suite';

loaderSuite('loader');
