// Every `npx node-toa ...` command the README shows, run for real. The bpf
// commands get `--cgroup`/`--pin-dir` of a sandbox this test made (tests
// never attach to the machine's root cgroup); otherwise they are verbatim.
// Kernel-module commands (make, make install, modprobe) are run in the QEMU
// guests by test/kernel/; `npm ci`, `npm test`, `.ci/run` by CI itself;
// `npm run demo` by demo-command.test.ts; `npm run bench` by bench's own run.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Sandbox } from './bpf-support';

const root = join(__dirname, '..');
const cli = join(root, 'dist/cjs/cli.js');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const commands = [...readme.matchAll(/^(?:sudo )?npx node-toa (.+?)(?:\s+#.*)?$/gm)].map((m) => m[1].trim());
let box: Sandbox;
let unitDir: string;

beforeAll(() => {
  box = new Sandbox('readme');
  unitDir = mkdtempSync(join(tmpdir(), 'toa-readme-units-'));
});
afterAll(async () => {
  await box.cleanup();
  rmSync(unitDir, { recursive: true, force: true });
});

function run(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, TOA_BPF_PIN_DIR: box.pinDir }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, out: stdout + stderr });
    });
  });
}

it('the README shows the commands this test runs', () => {
  expect(commands).toEqual(expect.arrayContaining([
    'bpf status', 'bpf detach', 'doctor', 'doctor --json',
    expect.stringMatching(/^bpf attach --trusted \S+$/),
    expect.stringMatching(/^bpf attach --cgroup \S+ --trusted \S+ --ports \S+$/),
    expect.stringMatching(/^bpf install-service --trusted \S+$/),
  ]));
});

/**
 * The README command with this test's sandbox in place of the machine's root
 * cgroup, pins and systemd unit folder (the unit is written, not enabled).
 */
function sandboxed(c: string): string[] {
  const argv = c.split(/\s+/);
  if (argv[0] !== 'bpf') return argv;
  const at = argv.indexOf('--cgroup');
  if (at >= 0) argv.splice(at, 2);
  if (argv[1] === 'attach') return [...argv, '--cgroup', box.cgroup, '--pin-dir', box.pinDir];
  if (argv[1] === 'install-service') return [...argv, '--cgroup', box.cgroup, '--pin-dir', box.pinDir, '--unit-dir', unitDir, '--no-enable'];
  return [...argv, '--pin-dir', box.pinDir];
}

it('each command works as the README says, in README order', async () => {
  // The state each doctor run meets is known: the backend is attached (to
  // this test's cgroup, which the doctor process is not in: exit 0) or it was
  // detached (no provider on this host: exit 1 and the next step named).
  let attached = false;
  for (const c of commands) {
    const { code, out } = await run(sandboxed(c));
    if (c.startsWith('doctor')) {
      expect({ c, code }).toEqual({ c, code: attached ? 0 : 1 });
      if (!attached) expect(out).toMatch(/no TOA provider is active/);
    } else {
      expect({ c, code, out }).toMatchObject({ code: 0 });
      if (/^bpf (attach|detach)\b/.test(c)) attached = c.startsWith('bpf attach');
    }
  }
}, 120_000);
