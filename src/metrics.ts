// node-toa/metrics: the TOA provider's kernel counters and this process's
// per-source counts, as a plain object (snapshot()) or as a prom-client
// collector (register()). prom-client is an optional peer dependency: it is
// loaded only by register(), from the application's own node_modules.
import { readFileSync } from 'node:fs';
import { type SourceCounts, sourceCounts } from './counts';
import { parseStats } from './doctor';
import { toaError } from './errors';

export type { SourceCounts } from './counts';

export interface KernelCounters {
  /** Which provider the counters come from; 'none' when no provider was found. */
  provider: 'node-toa-kmod' | 'node-toa-bpf' | 'other-kmod' | 'none';
  /** Counter name -> value summed over CPUs (kmod: /proc/net/toa_stats rows; eBPF: the pinned counters). */
  counters: Record<string, number>;
}

export interface MetricsSnapshot {
  kernel: KernelCounters;
  process: SourceCounts;
}

export interface MetricsOptions {
  /** Where the eBPF backend is pinned (default: TOA_BPF_PIN_DIR, else /sys/fs/bpf/node-toa). */
  pinDir?: string;
  /** Where the module's counters are (default /proc/net/toa_stats). */
  statsFile?: string;
}

/** The kernel module's counters when it is loaded, else the eBPF backend's, else none. */
export async function kernelCounters(options: MetricsOptions = {}): Promise<KernelCounters> {
  let text: string | undefined;
  try { text = readFileSync(options.statsFile ?? '/proc/net/toa_stats', 'utf8'); } catch { /* no module */ }
  if (text !== undefined) {
    let ours = false;
    try { readFileSync('/sys/module/toa/parameters/trusted'); ours = true; } catch { /* another vendor's */ }
    return { provider: ours ? 'node-toa-kmod' : 'other-kmod', counters: parseStats(text) };
  }
  if (process.platform === 'linux') {
    try {
      const bpf = await import('./bpf');
      const s = await bpf.status({ pinDir: options.pinDir });
      if (s.loaded && s.counters) return { provider: 'node-toa-bpf', counters: { ...s.counters } };
    } catch { /* not readable here (no root): reported as none */ }
  }
  return { provider: 'none', counters: {} };
}

export async function snapshot(options: MetricsOptions = {}): Promise<MetricsSnapshot> {
  return { kernel: await kernelCounters(options), process: sourceCounts() };
}

/** The part of prom-client's Registry this needs. */
export interface PromRegistryLike { registerMetric(metric: unknown): void }

export interface PromOptions extends MetricsOptions {
  /** Registry to register with (default: prom-client's global register). */
  registry?: PromRegistryLike;
  /** Metric name prefix (default 'node_toa_'). */
  prefix?: string;
}

interface PromGauge { reset(): void; set(labels: Record<string, string>, value: number): void }
interface PromClient {
  Gauge: new (config: {
    name: string; help: string; labelNames: string[]; registers: unknown[];
    collect?: (this: PromGauge) => void | Promise<void>;
  }) => PromGauge;
  register: PromRegistryLike;
}

function loadPromClient(): PromClient {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('prom-client') as PromClient;
  } catch (err) {
    const e = toaError('ERR_TOA_OPTIONAL_DEPENDENCY', 'node-toa/metrics register() needs prom-client: npm install prom-client (snapshot() works without it)');
    (e as Error & { cause?: unknown }).cause = err;
    throw e;
  }
}

/**
 * Registers two gauges, read at scrape time:
 * - `<prefix>kernel_counter{provider, counter}`: the provider's counters
 *   (monotonic except table_entries);
 * - `<prefix>connections{source}`: this process's per-source counts
 *   (toa, toa-nat64, peer, proxy-protocol, rejected).
 */
export function register(options: PromOptions = {}): void {
  const client = loadPromClient();
  const prefix = options.prefix ?? 'node_toa_';
  const registers = [options.registry ?? client.register];
  new client.Gauge({
    name: `${prefix}kernel_counter`,
    help: 'TOA provider counters, summed over CPUs (kernel module: /proc/net/toa_stats; eBPF backend: pinned counters)',
    labelNames: ['provider', 'counter'],
    registers,
    async collect() {
      const k = await kernelCounters(options);
      this.reset();
      for (const [counter, value] of Object.entries(k.counters)) this.set({ provider: k.provider, counter }, value);
    },
  });
  new client.Gauge({
    name: `${prefix}connections`,
    help: 'Connections of this process by where their client address came from (counted once, when lookup() or a framework integration first asks)',
    labelNames: ['source'],
    registers,
    collect() {
      this.reset();
      for (const [source, value] of Object.entries(sourceCounts())) this.set({ source }, value);
    },
  });
}
