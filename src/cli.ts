#!/usr/bin/env node
// node-toa command line: `doctor` diagnoses, `bpf` manages the eBPF backend.
import { doctor, renderDoctor } from './doctor';

const USAGE = `usage: node-toa <command>

  doctor [--json]        check the kernel, the TOA provider, its configuration
                         and counters; exits 1 when TOA cannot work
  bpf attach|set|status|detach|install-service [options]
                         manage the eBPF backend (no kernel module needed);
                         see \`node-toa bpf --help\`
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'doctor': {
      const unknown = rest.filter((a) => a !== '--json');
      if (unknown.length) {
        process.stderr.write(`node-toa doctor: unknown option ${unknown[0]}\n${USAGE}`);
        return 2;
      }
      const report = await doctor();
      process.stdout.write(rest.includes('--json') ? `${JSON.stringify(report, null, 2)}\n` : `${renderDoctor(report)}\n`);
      // 4: this user could not read the eBPF backend's state (not "absent")
      if (report.findings.some((f) => f.message.startsWith('permission denied'))) return 4;
      return report.verdict === 'fail' ? 1 : 0;
    }
    case 'bpf': {
      const { runBpfCommand } = await import('./bpf');
      return runBpfCommand(rest);
    }
    case undefined:
    case '-h':
    case '--help':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`node-toa: unknown command ${command}\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: Error & { code?: string }) => {
    process.stderr.write(`node-toa: ${err.message}${err.code ? ` (${err.code})` : ''}\n`);
    process.exitCode = 1;
  },
);
