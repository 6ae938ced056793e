// Every `npx node-toa ...` command the README shows, run for real. The bpf
// commands get `--cgroup`/`--pin-dir` of a sandbox this test made (tests
// never attach to the machine's root cgroup); otherwise they are verbatim.
// Kernel-module commands (make, make install, modprobe) are run in the QEMU
// guests by test/kernel/; `npm ci`, `npm test`, `.ci/run` by CI itself;
// `npm run demo` by demo-command.test.ts; `npm run bench` by bench's own run.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Sandbox } from './bpf-support';

const root = join(__dirname, '..');
const cli = join(root, 'dist/cjs/cli.js');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const commands = [...readme.matchAll(/^(?:sudo )?npx node-toa (.+?)(?:\s+#.*)?$/gm)].map((m) => m[1].trim());
let box: Sandbox;

beforeAll(() => { box = new Sandbox('readme'); });
afterAll(async () => { await box.cleanup(); });

function run(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, TOA_BPF_PIN_DIR: box.pinDir }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, out: stdout + stderr });
    });
  });
}

it('the README shows the commands this test runs', () => {
  expect(commands).toEqual(expect.arrayContaining([
    'bpf attach', 'bpf status', 'bpf detach', 'doctor', 'doctor --json',
    expect.stringMatching(/^bpf attach --trusted \S+ --ipv4-kinds \S+$/),
  ]));
});

/** The README command with this test's sandbox in place of the machine's root cgroup and pins. */
function sandboxed(c: string): string[] {
  const argv = c.split(/\s+/);
  if (argv[0] !== 'bpf') return argv;
  return argv[1] === 'attach' ? [...argv, '--cgroup', box.cgroup, '--pin-dir', box.pinDir] : [...argv, '--pin-dir', box.pinDir];
}

it('each command works as the README says, in README order', async () => {
  for (const c of commands) {
    const { code, out } = await run(sandboxed(c));
    if (c.startsWith('doctor')) {
      // Exit 1 means "TOA cannot work" (no provider answers this process):
      // the doctor must then say so and name the next step.
      expect([0, 1]).toContain(code);
      if (code !== 0) expect(out).toMatch(/next"?: /);
    } else {
      expect({ c, code, out }).toMatchObject({ code: 0 });
    }
  }
}, 120_000);
