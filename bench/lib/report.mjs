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
  lines.push(missed.length
    ? `Missed: ${missed.map((r) => `${r.id} ${r.label} (${r.provider})`).join('; ')}.`
    : 'Every measured target is met.');
  lines.push('');
  lines.push(`Measured ${meta.date} on ${meta.host}: ${meta.cpus} shared CPUs, kernel ${meta.kernel}, Node ${meta.node}` +
    `${meta.guest ? `; guest ${meta.guest}` : ''}. Ratios are taken per round (A and B back to back, order alternating) ` +
    'and the median of the rounds is shown with their range; absolute times on this shared machine mean little. ' +
    `A 0 B target is judged met below ${ZERO_BYTES_SLACK} B/connection where it comes from slab totals.`);
  return `${lines.join('\n')}\n`;
}

export function terminal(rows) {
  const cells = rows.map((r) => [`${r.id} ${r.label}`, r.provider, r.skipped ? '-' : show(r.value, r.unit), targetText(r), status(r)]);
  const head = ['Figure', 'Provider', 'Measured: median (min-max)', 'Target', 'Status'];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const fmt = (c) => c.map((x, i) => x.padEnd(widths[i])).join('  ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(fmt)].join('\n');
}
