// The table: every figure next to its target, saying plainly which are
// missed. Printed to the terminal and written as Markdown for the README.
import { meets, show } from './stats.mjs';

// A "0 B" target judged on slab totals: other tenants move those by tens
// of bytes per connection, so below half of the smallest slab object
// (kmalloc-64) counts as nothing allocated.
export const ZERO_BYTES_SLACK = 32;

/**
 * rows: { id, label, provider, value (summary), unit, target?: { op, value, text } }
 * Status: met / MISSED / info / not measured (reason).
 */
export function status(row) {
  if (row.skipped) return `not measured: ${row.skipped}`;
  if (!row.target) return 'info';
  const t = row.target;
  const ok = t.value === 0 && t.op === '<=' ? meets(row.value, '<=', ZERO_BYTES_SLACK) : meets(row.value, t.op, t.value);
  if (ok === null) return 'not measured';
  return ok ? 'met' : 'MISSED';
}

function targetText(row) {
  if (!row.target) return '-';
  return row.target.text ?? `${row.target.op} ${row.target.value}${row.unit === 'x' ? 'x' : ` ${row.unit}`}`;
}

export function markdown(rows, meta) {
  const lines = [
    `| Figure | Provider | Measured: median (min-max) | Target | Status |`,
    `|---|---|---|---|---|`,
  ];
  for (const r of rows) {
    lines.push(`| ${r.id} ${r.label} | ${r.provider} | ${r.skipped ? '-' : show(r.value, r.unit)} | ${targetText(r)} | ${status(r)} |`);
  }
  const missed = rows.filter((r) => status(r) === 'MISSED');
  lines.push('');
  const judged = rows.filter((r) => ['met', 'MISSED'].includes(status(r)));
  lines.push(!judged.length ? 'No target could be judged: nothing was measured.'
    : missed.length ? `Missed: ${missed.map((r) => `${r.id} ${r.label} (${r.provider})`).join('; ')}.`
      : 'Every measured target is met.');
  lines.push('');
  lines.push(`Measured ${meta.date} on ${meta.host}: ${meta.cpus} shared CPUs, kernel ${meta.kernel}, Node ${meta.node}` +
    `${meta.guest ? `; guest ${meta.guest}` : ''}; run time ${meta.runSeconds} s.`);
  lines.push('');
  lines.push('How to read it: every ratio is taken per round, A and B back to back in alternating order, and the ' +
    'median of the rounds is shown with their range. The machine is shared (2 cores, other jobs running), so rates ' +
    'are judged per CPU-second of the processes involved (loopback softirq work is charged to them: no ' +
    'IRQ_TIME_ACCOUNTING) and getpeername in thread CPU time; wall-clock rates are shown but not judged. ' +
    'Guest figures run under QEMU TCG (this machine cannot run KVM guests), which distorts the relative cost of ' +
    `kernel paths; absolute times there are not judged. A 0 B target is met below ${ZERO_BYTES_SLACK} B/connection ` +
    'where the figure comes from slab totals; the module\'s figures come from its own entry count times its slab object size.');
  return `${lines.join('\n')}\n`;
}

export function terminal(rows) {
  const cells = rows.map((r) => [`${r.id} ${r.label}`, r.provider, r.skipped ? '-' : show(r.value, r.unit), targetText(r), status(r)]);
  const head = ['Figure', 'Provider', 'Measured: median (min-max)', 'Target', 'Status'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const fmt = (c) => c.map((x, i) => x.padEnd(widths[i])).join('  ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(fmt)].join('\n');
}
