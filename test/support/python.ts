// A python3 child that answers in lines of JSON: the tests' way to make
// socket calls Node cannot (any getsockopt level, a thread blocked in
// accept(), a socket handed over by fd). Debian's /usr/bin/python3, as in
// the guests. One driver for all of them, so that a child that dies always
// says why: 'close' (not 'exit') is awaited before reporting, so stderr,
// where a traceback goes, has been read.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';

export interface PythonOptions {
  /** cgroup v2 directory the child joins before it execs python */
  cgroup?: string;
  /** what the child is, in error messages */
  name?: string;
}

export class PythonLines {
  readonly proc: ChildProcessWithoutNullStreams;
  private readonly name: string;
  private lines: string[] = [];
  private buf = '';
  private stderr = '';
  private closed = false;
  private wakers = new Set<() => void>();

  constructor(script: string, args: string[] = [], { cgroup, name = 'python helper' }: PythonOptions = {}) {
    this.name = name;
    // the shell joins the cgroup before exec, so every socket of the child is in it
    const join = cgroup ? `echo $$ > '${path.join(cgroup, 'cgroup.procs')}' && ` : '';
    this.proc = spawn('sh', ['-c', `${join}exec /usr/bin/python3 -c "$0" "$@"`, script, ...args]);
    this.proc.stdout.on('data', (d) => {
      const parts = (this.buf + d).split('\n');
      this.buf = parts.pop()!;
      this.lines.push(...parts);
      this.wakeAll();
    });
    this.proc.stderr.on('data', (d) => { this.stderr += d; });
    this.proc.on('close', () => { this.closed = true; this.wakeAll(); });
  }

  /** The next line, parsed. Rejects if the child ends or stays silent. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async next(timeoutMs = 20000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    while (!this.lines.length) {
      if (this.closed) {
        throw new Error(`${this.name} exited (${this.proc.exitCode ?? this.proc.signalCode}): ${this.stderr.trim() || 'no stderr'}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name} silent for ${timeoutMs} ms: ${this.stderr.trim() || 'no stderr'}`);
      await new Promise<void>((r) => {
        const wake = () => { clearTimeout(t); this.wakers.delete(wake); r(); };
        const t = setTimeout(wake, left);
        this.wakers.add(wake);
      });
    }
    return JSON.parse(this.lines.shift()!);
  }

  private wakeAll(): void {
    for (const w of [...this.wakers]) w();
  }

  /** Writes one line to the child's stdin. */
  send(line: string): void {
    this.proc.stdin.write(`${line}\n`);
  }

  /** Request and answer: an answer {exception} rejects. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async ask(request: object, timeoutMs = 30000): Promise<any> {
    this.send(JSON.stringify(request));
    const out = await this.next(timeoutMs);
    if (out && typeof out === 'object' && 'exception' in out) {
      throw new Error(`${this.name}: ${out.exception} for ${JSON.stringify(request)}`);
    }
    return out;
  }

  /** Ends the child if it still runs; resolves once it is gone. */
  async stop(): Promise<void> {
    if (this.closed) return;
    this.proc.stdin.end();
    this.proc.kill('SIGKILL');
    if (!this.closed) await once(this.proc, 'close');
  }
}
