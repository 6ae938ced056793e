// The loader on this guest's kernel (the package's own toa-bpf; bpftool only
// to play an older loader that left orphans): upgrade under load, orphans,
// foreign pins, non-root users, the cgroup root, the systemd unit.
import { loaderSuite } from '../bpf-loader-suite';

loaderSuite('k-loader');
