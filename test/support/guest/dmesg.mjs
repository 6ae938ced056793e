// Finds kernel reports in a guest's kernel log (dmesg and the serial
// console) that fail the kernel's run: oops/panic, BUG:, any WARN (its
// "cut here" line or a "WARNING:" line), KFENCE reports, lockdep and RCU
// reports, memory-corruption reports. Each finding comes with the lines of
// its report, so a failure shows what the kernel said, not only that it
// said something.

// A kernel log line as dmesg and the console print it: "[   12.345678] text"
// (CONFIG_PRINTK_TIME is set in every Debian kernel); dmesg's "<4>" level
// prefix and a console's carriage returns are dropped.
const KERNEL_LINE = /^(?:<\d>)?\[\s*\d+\.\d+\]\s?(.*?)\r?$/;
// On the console, user space may have left a partial line (a terminal
// escape, say) in front of the kernel's.
const CONSOLE_KERNEL_LINE = /\[\s*\d+\.\d{6}\]\s?(.*?)\r?$/;

/** The start of a report: any line matching one of these (the first that matches names it). */
export const TROUBLE = [
  // most specific first: a lockdep or KFENCE headline also reads WARNING:/BUG:
  ['kfence', /\bKFENCE: /],
  // lockdep's own headlines (they also start with WARNING:/BUG: on current
  // kernels; older ones used "[ INFO: ... ]")
  ['lockdep', /possible (circular|recursive) locking|inconsistent lock state|possible irq lock inversion|lock held when returning to user space|bad unlock balance|held lock freed|suspicious RCU usage|trying to register non-static key/],
  ['memory', /\b(KASAN|UBSAN|KMSAN): |refcount_t: |list_(add|del) corruption|slab.*corrupt|Redzone|Poison overwritten|Object padding overwritten/],
  ['stall', /soft lockup|hard LOCKUP|hung_task|INFO: task .* blocked for more than|RCU stall|rcu_sched self-detected|rcu: INFO: rcu_.* detected stalls/],
  ['oops', /\bOops\b|general protection fault|\bKernel panic\b|Unable to handle kernel|Internal error:/],
  ['bug', /\bBUG: |kernel BUG at/],
  ['warn', /-{12}\[ cut here \]-{12}|\bWARNING: /],
  ['trace', /\bCall Trace:|^Call trace:/],
];

// Boot messages that contain "WARNING:" but are not a WARN(): the CPU
// mitigation notes x86 prints for QEMU's `-cpu max` model. Matched whole, so
// nothing else can hide behind them.
const BENIGN = [
  /^(RETBleed|Spectre V2|MDS|MMIO Stale Data|TAA|GDS|SRBDS|ITS|VMSCAPE|Speculative Store Bypass|Spectre V1|L1TF|SRSO|BHI|RFDS): WARNING: [^\n]*$/,
];

// Where a report ends: the "---[ end trace ... ]---" of a WARN/oops, or the
// "====" rule closing KFENCE/KASAN/UBSAN reports. Reports without one (a
// lone BUG: line, lockdep) end where the register and stack dump does.
const END = /---\[ end (trace|Kernel panic)|^={20,}$/;
const DUMP = /^(\s|$)|^<\/?(TASK|IRQ|NMI)>|^([A-Z][A-Z0-9]{1,3}|x\d+|pc|lr|sp|pstate): |^(CPU|Hardware name|Call [Tt]race|Modules linked in|Workqueue|Tainted|stack backtrace|Code|in_atomic|preempt_count|RCU nest depth|irq event stamp|(hard|soft)irqs (last|disabled))\b|^-+$/;
const MAX_REPORT_LINES = 60;

/** Kernel log lines (text only) of a dmesg or console capture. */
export function kernelLines(text, { consoleText = false } = {}) {
  const out = [];
  for (const raw of String(text ?? '').split('\n')) {
    const m = (consoleText ? CONSOLE_KERNEL_LINE : KERNEL_LINE).exec(raw);
    if (m) out.push(m[1]);
    // dmesg's own output has no other lines; a console interleaves user space
    else if (!consoleText && raw.trim()) out.push(raw.replace(/\r$/, ''));
  }
  return out;
}

function classify(line) {
  if (BENIGN.some((re) => re.test(line))) return null;
  for (const [kind, re] of TROUBLE) if (re.test(line)) return kind;
  return null;
}

/**
 * -> [{ kind, headline, lines }] for every report in `lines` (kernel text
 * lines). A report takes the lines up to its end marker (at most
 * MAX_REPORT_LINES); trouble lines inside it belong to it.
 */
export function findReports(lines) {
  const reports = [];
  for (let i = 0; i < lines.length; i++) {
    const kind = classify(lines[i]);
    if (!kind) continue;
    // KFENCE/KASAN/lockdep open with a rule line just before the headline
    const start = i > 0 && /^={20,}$/.test(lines[i - 1]) ? i - 1 : i;
    const limit = Math.min(lines.length - 1, start + MAX_REPORT_LINES - 1);
    let end = i + 1;
    while (end <= limit && !END.test(lines[end])) end++;
    if (end > limit) {
      // no end marker: the dump that follows the headline
      for (end = i; end < limit && DUMP.test(lines[end + 1]); end++);
    }
    const block = lines.slice(start, end + 1);
    // the headline says what happened; "cut here" and rules do not
    const headline = block.find((l) => classify(l) && !/cut here/.test(l)) ?? lines[i];
    reports.push({ kind: classify(headline) ?? kind, headline, lines: block });
    i = end;
  }
  return reports;
}

/**
 * Kernel lines between the self-test module's markers (selftest/) and the
 * lines outside them; `selftest` is null when the markers are not both there.
 */
export function splitSelftest(lines, nonce) {
  const begin = lines.findIndex((l) => l.includes(`toa-selftest ${nonce}: begin`));
  const end = begin < 0 ? -1 : lines.findIndex((l, i) => i > begin && l.includes(`toa-selftest ${nonce}: end`));
  if (!nonce || end < 0) return { selftest: null, rest: lines };
  return { selftest: lines.slice(begin + 1, end), rest: [...lines.slice(0, begin), ...lines.slice(end + 1)] };
}

/**
 * All reports of a guest run: dmesg (complete unless the ring buffer
 * wrapped) and the console (all that exists when the guest panicked), the
 * same report seen in both kept once. With the self-test's `nonce`, the
 * reports between its markers come back apart, as `selftest` (null when
 * the markers are missing from both).
 */
export function guestReports({ dmesg = '', consoleText = '', nonce = '' }) {
  const seen = new Set();
  const reports = [];
  let selftest = null;
  for (const lines of [kernelLines(dmesg), kernelLines(consoleText, { consoleText: true })]) {
    const split = splitSelftest(lines, nonce);
    if (split.selftest) {
      const own = findReports(split.selftest);
      selftest ??= own;
      // the same reports in the other source are the self-test's too
      for (const r of own) seen.add(r.headline);
    }
    for (const r of findReports(split.rest)) {
      if (seen.has(r.headline)) continue;
      seen.add(r.headline);
      reports.push(r);
    }
  }
  return { reports, selftest };
}

/** Human-readable dump of reports, for a failing run's output. */
export function formatReports(reports, { maxLines = 40 } = {}) {
  return reports.map((r, n) => [`--- kernel report ${n + 1}/${reports.length} (${r.kind}): ${r.headline}`,
    ...r.lines.slice(0, maxLines).map((l) => `    ${l}`),
    ...(r.lines.length > maxLines ? [`    ... ${r.lines.length - maxLines} more lines`] : [])].join('\n')).join('\n');
}
