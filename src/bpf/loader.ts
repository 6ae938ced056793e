// The client of toa-bpf (native/bpf/loader.c), the package's own libbpf
// loader: one co-process per command, one request per line. Holding the
// co-process open holds the pin directory's lock it took, so a command's
// reads and writes never interleave with another command's.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { arch } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { BpfError } from './errors';

/** An errno from the loader: `code` is its name (EACCES, ENOENT, ...). */
export interface LoaderFailure {
  code: string;
  errno: number;
  message: string;
  /** libbpf's and the verifier's output for the failed request */
  log?: string;
}

export class LoaderError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly log?: string;

  constructor(f: LoaderFailure) {
    super(f.message);
    this.name = 'LoaderError';
    this.code = f.code;
    this.errno = f.errno;
    if (f.log) this.log = f.log;
  }
}

/** The package root: the directory whose package.json names node-toa. */
function packageRoot(): string | undefined {
  for (let dir = typeof __dirname === 'string' ? __dirname : process.cwd(); ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && /"name"\s*:\s*"node-toa"/.test(readFileSync(pkg, 'utf8'))) return dir;
    if (dirname(dir) === dir) return undefined;
  }
}

/**
 * $TOA_BPF_LOADER, else the package's own build (build/Release/toa-bpf),
 * else its prebuild for this architecture (prebuilds/linux-<arch>/toa-bpf).
 */
export function findLoader(): string {
  if (process.env.TOA_BPF_LOADER) return resolve(process.env.TOA_BPF_LOADER);
  const root = packageRoot();
  const candidates = root ? [join(root, 'build/Release/toa-bpf'), join(root, `prebuilds/linux-${arch()}/toa-bpf`)] : [];
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next one
    }
  }
  throw new BpfError('ERR_TOA_BPF_NO_LOADER',
    `the eBPF loader toa-bpf is missing (looked in ${candidates.join(', ') || 'no package directory'}): `
    + 'reinstall node-toa, or build it with "npx node-gyp rebuild" (needs libbpf-dev, libelf-dev, zlib1g-dev)');
}

export class Loader {
  private lines: string[] = [];
  private waiting?: () => void;
  private exited = false;
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(private readonly proc: ChildProcessWithoutNullStreams) {
    createInterface({ input: proc.stdout }).on('line', (l) => {
      this.lines.push(l);
      this.waiting?.();
    });
    proc.on('exit', () => {
      this.exited = true;
      this.waiting?.();
    });
    proc.on('error', () => {
      this.exited = true;
      this.waiting?.();
    });
  }

  static start(path = findLoader()): Loader {
    return new Loader(spawn(path, [], { stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  private async next(): Promise<string> {
    while (!this.lines.length) {
      if (this.exited) throw new BpfError('ERR_TOA_BPF_LOADER', 'the loader toa-bpf exited unexpectedly');
      await new Promise<void>((r) => { this.waiting = r; });
      this.waiting = undefined;
    }
    return this.lines.shift()!;
  }

  /** One request; rejects with a LoaderError carrying the errno name. */
  request<T = unknown>(...fields: Array<string | number>): Promise<T> {
    const run = async () => {
      const text = fields.map(String);
      if (text.some((f) => /[\t\n]/.test(f) || f === '')) {
        throw new BpfError('ERR_INVALID_ARG_VALUE', `a path or value contains a tab or newline, or is empty: ${JSON.stringify(text)}`);
      }
      this.proc.stdin.write(`${text.join('\t')}\n`);
      const r = JSON.parse(await this.next()) as { ok?: T; error?: LoaderFailure };
      if (r.error) throw new LoaderError(r.error);
      return r.ok as T;
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** Ends the co-process; resolves once it is gone (and with it its lock and fds). */
  async close(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.proc.once('exit', () => r()));
    this.proc.stdin.end();
    await gone;
  }
}

/** Runs fn with a fresh loader, closed whatever happens. */
export async function withLoader<T>(fn: (l: Loader) => Promise<T>): Promise<T> {
  const l = Loader.start();
  try {
    return await fn(l);
  } finally {
    await l.close();
  }
}
