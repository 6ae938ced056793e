// Runs Debian's bpftool. It is the loader: libbpf inside it reads the object,
// creates the maps, loads and pins the programs; the kernel then keeps them
// attached after this process is gone. Nothing here needs a compiler or a
// native addon on the machine, only the `bpftool` package.
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { BpfError } from './errors';

/** Debian installs it in /usr/sbin, which a non-login root shell may lack. */
const SEARCH = ['/usr/sbin', '/sbin', '/usr/local/sbin', '/usr/bin', '/bin', '/usr/local/bin'];

export function findBpftool(explicit?: string): string {
  const wanted = explicit ?? process.env.TOA_BPFTOOL;
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...SEARCH];
  const candidates = wanted ? [wanted] : dirs.map((d) => join(d, 'bpftool'));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next candidate
    }
  }
  throw new BpfError('ERR_TOA_BPF_NO_BPFTOOL', wanted
    ? `bpftool not executable at ${wanted}`
    : 'bpftool not found: install it (Debian/Ubuntu: apt-get install bpftool; older releases ship it in linux-tools-*)');
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export class Bpftool {
  constructor(readonly path: string) {}

  run(args: string[]): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      execFile(this.path, args, { maxBuffer: 64 << 20, timeout: 120_000 }, (err, stdout, stderr) => {
        if (!err) {
          resolve({ stdout, stderr });
          return;
        }
        const text = `${stderr}${stdout}`.trim();
        const code = /Operation not permitted|EPERM|permission denied/i.test(text) && process.getuid?.() !== 0
          ? 'ERR_TOA_BPF_NOT_ROOT' : 'ERR_TOA_BPF_BPFTOOL';
        reject(new BpfError(code, `bpftool ${args.join(' ')}: ${lastLine(text) || err.message}`, text));
      });
    });
  }

  async json<T>(args: string[]): Promise<T> {
    const { stdout } = await this.run(['-j', ...args]);
    try {
      return JSON.parse(stdout) as T;
    } catch {
      throw new BpfError('ERR_TOA_BPF_BPFTOOL', `bpftool ${args.join(' ')}: output is not JSON`, stdout);
    }
  }
}

function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  // libbpf prints the verifier log before its own summary; the summary is last
  return lines.slice(-1)[0] ?? '';
}

/** bpftool prints bytes as "0x1f" strings. */
export function bytesOf(v: unknown): number[] {
  if (!Array.isArray(v)) throw new BpfError('ERR_TOA_BPF_BPFTOOL', 'unexpected bpftool JSON: no byte array');
  return v.map((x) => (typeof x === 'string' ? parseInt(x, 16) : Number(x)));
}
