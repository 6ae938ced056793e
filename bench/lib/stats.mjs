// Figures as the report shows them: the median of several runs with the
// range they spanned. Ratios are taken per round (A and B measured back to
// back) before the median, so a noisy neighbour slowing one round moves
// both sides of that round's ratio together.

export function summary(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return { median: NaN, min: NaN, max: NaN, n: 0, runs: [] };
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { median, min: v[0], max: v.at(-1), n: v.length, runs: values };
}

export function ratios(as, bs) {
  return as.map((a, i) => a / bs[i]);
}

/** Alternates A and B (ABBA...) so drift over the run hits both equally. */
export function abOrder(round) {
  return round % 2 ? ['b', 'a'] : ['a', 'b'];
}

function fmt(x, digits) {
  if (!Number.isFinite(x)) return 'n/a';
  return x.toFixed(digits);
}

/** "1.07x (1.02-1.11)" or "38.2 ns (35.0-41.3)" */
export function show(s, unit) {
  if (!s || !s.n) return 'n/a';
  if (unit === 'x') return `${fmt(s.median, 3)}x (${fmt(s.min, 3)}-${fmt(s.max, 3)})`;
  const d = Math.abs(s.median) >= 100 ? 0 : Math.abs(s.median) >= 10 ? 1 : 2;
  return `${fmt(s.median, d)} ${unit} (${fmt(s.min, d)}-${fmt(s.max, d)})`;
}

/** Target check: `op` is '<=' or '>='; returns true / false / null (not measured). */
export function meets(s, op, target) {
  if (!s || !s.n || !Number.isFinite(s.median)) return null;
  return op === '<=' ? s.median <= target : s.median >= target;
}

/** Accept-rate rounds of a plain server (a) and a TOA/PROXY one (b): wall and per-CPU-second figures. */
export function acceptSummary(wall, perCpu) {
  return {
    plainRate: summary(wall.a),
    toaRate: summary(wall.b),
    wallRatio: summary(ratios(wall.b, wall.a)),
    plainPerCpuSecond: summary(perCpu.a),
    toaPerCpuSecond: summary(perCpu.b),
    ratio: summary(ratios(perCpu.b, perCpu.a)),
  };
}

/**
 * getpeername cost of a socket without (a) and with (b) a provider, in ns per
 * call, and of TOA_SO_GET_INFO on each (`info`): a refused query on a, an
 * answer on b.
 */
export function peernameSummary(ns, info) {
  return {
    plainNs: summary(ns.a),
    toaNs: summary(ns.b),
    ratio: summary(ratios(ns.b, ns.a)),
    infoFailNs: summary(info.a),
    infoNs: summary(info.b),
    infoVsPeername: summary(ratios(info.b, ns.b)),
  };
}
