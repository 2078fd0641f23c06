import type { Counts } from './checker';
import type { LoadStats } from './load';

export interface ScenarioResult {
  readonly key: string;
  readonly title: string;
  readonly load: LoadStats;
  readonly counts: Counts | undefined;
  readonly rawDuplicates: number;
  readonly crashes: number;
  readonly quiescence: 'quiet' | 'stalled' | 'deadline' | 'not reached';
  readonly loadSeconds: number;
  readonly settleSeconds: number;
  readonly notes: readonly string[];
  readonly error?: string;
}

/** What makes a scenario fail: any loss, any phantom, any duplicate side effect, a crash, or no quiescence. */
export function failures(result: ScenarioResult): string[] {
  const c = result.counts;
  if (!c) return [`no counts: ${result.error ?? 'the scenario did not finish'}`];
  const found: string[] = [];
  if (result.error) found.push(`error: ${result.error}`);
  if (c.acknowledgedMissing) found.push(`${c.acknowledgedMissing} acknowledged orders not committed`);
  if (c.lostOrderCreated) found.push(`${c.lostOrderCreated} committed OrderCreated never delivered`);
  if (c.lostOrderPaid) found.push(`${c.lostOrderPaid} committed OrderPaid never delivered`);
  if (c.phantomPayments) found.push(`${c.phantomPayments} payments for orders never committed`);
  if (c.phantomPaid) found.push(`${c.phantomPaid} OrderPaid handled for payments never committed`);
  if (c.duplicatePaymentEffects) found.push(`${c.duplicatePaymentEffects} duplicate RecordPayment executions`);
  if (c.duplicatePaidEffects) found.push(`${c.duplicatePaidEffects} duplicate OrderPaid executions`);
  if (result.crashes) found.push(`${result.crashes} unexpected service exits`);
  if (result.quiescence !== 'quiet') found.push(`did not settle (${result.quiescence})`);
  return found;
}

const COLUMNS: ReadonlyArray<readonly [string, (r: ScenarioResult) => string]> = [
  ['scenario', (r) => r.key],
  ['attempted', (r) => String(r.load.attempted)],
  ['HTTP 201', (r) => String(r.load.created)],
  ['HTTP err', (r) => String(r.load.failed)],
  ['committed', (r) => String(r.counts?.committed ?? '-')],
  ['201 not committed', (r) => String(r.counts?.acknowledgedMissing ?? '-')],
  ['committed never delivered', (r) => (r.counts ? String(r.counts.lostOrderCreated + r.counts.lostOrderPaid) : '-')],
  ['delivered never committed', (r) => (r.counts ? String(r.counts.phantomPayments + r.counts.phantomPaid) : '-')],
  ['dup side effects', (r) => (r.counts ? String(r.counts.duplicatePaymentEffects + r.counts.duplicatePaidEffects) : '-')],
  ['raw dup deliveries', (r) => String(r.rawDuplicates)],
  ['crashes', (r) => String(r.crashes)],
  ['DLQ', (r) => String(r.counts?.deadLettered ?? '-')],
  ['load s', (r) => r.loadSeconds.toFixed(0)],
  ['settle s', (r) => r.settleSeconds.toFixed(1)],
  ['result', (r) => (failures(r).length === 0 ? 'ok' : 'FAIL')],
];

/** The results as a Markdown table (readable in a terminal, pasteable into the README). */
export function table(results: readonly ScenarioResult[]): string {
  const rows = [COLUMNS.map(([title]) => title), ...results.map((r) => COLUMNS.map(([, cell]) => cell(r)))];
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]) => `| ${cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

export function legend(results: readonly ScenarioResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${r.key}: ${r.title}`);
    for (const note of r.notes) lines.push(`   - ${note}`);
    lines.push(`   - HTTP latency of acknowledged orders: p50 ${r.load.p50Ms} ms, p99 ${r.load.p99Ms} ms`);
    const errors = Object.entries(r.load.failures).map(([kind, n]) => `${n} ${kind}`);
    if (errors.length) lines.push(`   - HTTP errors: ${errors.join(', ')}`);
    if (r.load.notSent) lines.push(`   - ${r.load.notSent} orders not sent: the load generator held back while 400 requests were in flight`);
    for (const failure of failures(r)) lines.push(`   - FAIL: ${failure}`);
  }
  return lines.join('\n');
}
