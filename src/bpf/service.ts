// `node-toa bpf install-service`: bpf/systemd/node-toa-bpf.service with its
// ExecStart filled in (this node, this package's CLI, the attach options
// given), written to /etc/systemd/system and enabled.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { BpfError } from './errors';

export const UNIT_NAME = 'node-toa-bpf.service';

function packageRoot(): string {
  for (let dir = typeof __dirname === 'string' ? __dirname : process.cwd(); ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && /"name"\s*:\s*"node-toa"/.test(readFileSync(pkg, 'utf8'))) return dir;
    if (dirname(dir) === dir) throw new BpfError('ERR_TOA_BPF_SERVICE', 'cannot locate the node-toa package');
  }
}

/** systemd's quoting for one ExecStart argument */
function quote(arg: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `"${arg.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$/g, '$$$$').replace(/%/g, '%%')}"`;
}

export interface ServiceOptions {
  /** attach's arguments, as given on the command line */
  argv: string[];
  unitDir?: string;
  enable?: boolean;
  /** validates the options before anything is written (throws) */
  check?: () => void;
}

/** The unit's text for these attach arguments. */
export function unitText(argv: string[]): string {
  const root = packageRoot();
  const cli = [join(root, 'dist/cjs/cli.js'), join(root, 'dist/cli.js')].find(existsSync) ?? join(root, 'dist/cjs/cli.js');
  const exec = [process.execPath, cli, 'bpf', 'attach', ...argv].map(quote).join(' ');
  const template = readFileSync(join(root, 'bpf/systemd', UNIT_NAME), 'utf8');
  return template.replace(/@EXEC_START@/g, exec);
}

export function installService(o: ServiceOptions): { path: string; message: string } {
  o.check?.();
  const dir = resolve(o.unitDir ?? '/etc/systemd/system');
  const path = join(dir, UNIT_NAME);
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${path}.tmp`, unitText(o.argv));
  renameSync(`${path}.tmp`, path);
  if (o.enable === false) return { path, message: `wrote ${path}` };
  try {
    execFileSync('systemctl', ['daemon-reload'], { stdio: 'pipe' });
    execFileSync('systemctl', ['enable', '--now', UNIT_NAME], { stdio: 'pipe' });
  } catch (e) {
    throw new BpfError('ERR_TOA_BPF_SERVICE', `wrote ${path}, but systemctl failed: ${(e as Error).message}`);
  }
  return { path, message: `wrote ${path}, enabled and started ${UNIT_NAME}` };
}
