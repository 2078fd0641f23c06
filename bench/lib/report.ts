/**
 * What a workload is, what one run of it yields, and how the harness turns the rounds into the table
 * (medians and spreads) and the targets.
 */
import type { Check, Resources, Spread } from './helpers';
import { spread } from './helpers';
import type { CpuMeter } from './cpu';
import type { HarnessContext } from './processes';

export interface Options {
  rounds: number;
  /** Steady load: business transactions per round. */
  transactions: number;
  warmup: number;
  concurrency: number;
  poolMax: number;
  /** Floor D: seconds of each pgbench run. */
  floorSeconds: number;
  /** Paced latency: events per second and seconds. */
  rate: number;
  /** Paced latency: a second, lower rate for ours (below saturation). */
  lowRate: number;
  /** Paced latency: more rates for ours (--sweep-rates), to find the highest one that meets the p99 target. */
  sweepRates: number[];
  pacedSeconds: number;
  /** Paced latency: seconds at the rate before the clock starts (a cold pipeline lags its first seconds). */
  pacedWarmupSeconds: number;
  /** Backlog drain: rows. */
  backlog: number;
  /** Backlog drain and --big: handlers with the inbox. */
  backlogInbox: boolean;
  /** Limit A: messages per round. */
  brokerMessages: number;
  /** Inbox workload: messages per round. */
  inboxMessages: number;
  /** --big: rows of the memory run. */
  bigRows: number;
  /** Consumer prefetch of every consumer (ours and the plain ones). */
  prefetch: number;
  /** Relay batch size (ours and Limit B). */
  batchSize: number;
  /** Confirm window of the raw publisher. */
  window: number;
  relayRows: number;
  orders: number;
  retryFailing: number;
  retryRate: number;
  /** Message ids: rows in the table before the run, and seconds of each pgbench run. */
  idsRows: number;
  idsSeconds: number;
  only: string[] | undefined;
  big: boolean;
  cpuProf: boolean;
  /** Paced: write per-event times and the stall probe's samples (bench/results/<stamp>-timelines/). */
  timelines: boolean;
  /** Paced: idleTimeoutMillis of the producer's and consumer's pg pools (0: idle connections are kept). */
  poolIdleMs: number;
  /** Our consumers' `consumer.ackDelayMs`; the library's default when unset. */
  ackDelayMs?: number;
}

/** One run of one variant of a workload (one round). */
export interface VariantRun {
  metrics: Record<string, number>;
  checks: Check[];
  /** Anything else worth keeping in the JSON (RSS series, ...). */
  details?: Record<string, unknown>;
}

export interface RunContext {
  options: Options;
  harness: HarnessContext;
  resources: Resources;
  cpu: CpuMeter;
  round: number;
  log(message: string): void;
}

export interface Row {
  workload: string;
  variant: string;
  throughput?: string;
  spread?: string;
  ratio?: string;
  latency?: string;
  drain?: string;
  rss?: string;
}

export interface Target {
  name: string;
  target: string;
  measured: string;
  met: boolean;
}

export interface Summary {
  rows: Row[];
  targets: Target[];
}

export type Runs = Record<string, VariantRun[]>;

export interface Workload {
  name: string;
  title: string;
  /** Variants, run in this order in even rounds and in reverse in odd ones. */
  variants(options: Options): string[];
  /** Rounds, when not `--rounds`. */
  rounds?(options: Options): number;
  run(variant: string, context: RunContext): Promise<VariantRun>;
  /** Rows and targets from this workload's runs; `all` holds every workload's runs (a target may cite another's). */
  summarize(runs: Runs, options: Options, all: Readonly<Record<string, Runs>>): Summary;
}

// ---------------------------------------------------------------------------------------------------
// Aggregation

export function metric(runs: VariantRun[] | undefined, key: string): Spread {
  return spread((runs ?? []).map((run) => run.metrics[key] ?? NaN));
}

/** Ratio a/b of one metric, per round (both variants ran in the same round), then its median. */
export function ratio(a: VariantRun[] | undefined, b: VariantRun[] | undefined, key: string, keyB = key): Spread {
  const values: number[] = [];
  const n = Math.min(a?.length ?? 0, b?.length ?? 0);
  for (let i = 0; i < n; i++) values.push(a![i]!.metrics[key]! / b![i]!.metrics[keyB]!);
  return spread(values);
}

// ---------------------------------------------------------------------------------------------------
// Formatting

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function fmtNumber(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return '–';
  return digits === 0 ? integer.format(value) : value.toFixed(digits);
}

export function fmtRate(s: Spread, unit: string): string {
  return `${fmtNumber(s.median)} ${unit}`;
}

export function fmtSpread(s: Spread, digits = 0): string {
  if (s.rounds.length < 2) return '(1 round)';
  const value = (v: number) => (digits > 0 && Math.abs(v) >= 100 ? fmtNumber(v) : fmtNumber(v, digits));
  return `±${s.spreadPct.toFixed(1)}% [${value(s.min)}–${value(s.max)}]`;
}

export function fmtRatio(s: Spread, against: string): string {
  if (!Number.isFinite(s.median)) return '';
  return `${s.median.toFixed(2)}× ${against}`;
}

export function fmtMs(s: Spread): string {
  if (!Number.isFinite(s.median)) return '–';
  return s.median >= 100 ? fmtNumber(s.median) : s.median.toFixed(1);
}

export function fmtLatency(runs: VariantRun[] | undefined, percentiles: string[] = ['p50', 'p95', 'p99']): string {
  return percentiles.map((p) => fmtMs(metric(runs, `latency.${p}`))).join(' / ');
}

/** Where the events were at the last commit (medians): "(left: outbox 1,234 / queue 56)". */
export function leftAtLastCommit(runs: VariantRun[] | undefined): string {
  const outbox = metric(runs, 'atLastCommit.outboxPending').median;
  const queue = metric(runs, 'atLastCommit.queueReady').median;
  if (!Number.isFinite(queue)) return '';
  return `(left: outbox ${fmtNumber(outbox)} / queue ${fmtNumber(queue)})`;
}

/** Median peak RSS of each process of a variant, e.g. "producer 160 / consumer 120". */
export function fmtRss(runs: VariantRun[] | undefined): string {
  const keys = Object.keys(runs?.[0]?.metrics ?? {}).filter((k) => k.startsWith('rss.'));
  return keys.map((k) => `${k.slice(4)} ${fmtNumber(metric(runs, k).median)}`).join(' / ');
}

// ---------------------------------------------------------------------------------------------------
// Printing

const COLUMNS: Array<[keyof Row, string]> = [
  ['workload', 'Workload'],
  ['variant', 'Variant'],
  ['throughput', 'Throughput (median)'],
  ['spread', 'Spread over rounds'],
  ['ratio', 'Ratio (median of rounds)'],
  ['latency', 'Latency ms p50/p95/p99'],
  ['drain', 'Drain'],
  ['rss', 'Peak RSS MB'],
];

export function renderTable(rows: Row[]): string {
  const widths = COLUMNS.map(([key, title]) => Math.max(title.length, ...rows.map((row) => (row[key] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  const out = [line(COLUMNS.map(([, title]) => title)), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`];
  let previous = '';
  for (const row of rows) {
    out.push(line(COLUMNS.map(([key]) => (key === 'workload' && row.workload === previous ? '' : (row[key] ?? '')))));
    previous = row.workload;
  }
  return out.join('\n');
}

export function renderTargets(targets: Target[]): string {
  const rows = targets.map((t) => [t.met ? 'MET' : 'MISSED', t.name, t.target, t.measured]);
  const titles = ['', 'Target', 'Goal', 'Measured'];
  const widths = titles.map((title, i) => Math.max(title.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(titles), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** A steal share for the CPU table: one decimal (usually 0), blank for runs recorded before it was. */
function steal(pct: number): string {
  return Number.isFinite(pct) ? pct.toFixed(1) : '';
}

/** The CPU table: per workload and variant, CPU ms per event of each process and server. */
export function renderCpuTable(entries: Array<{ workload: string; variant: string; runs: VariantRun[] }>): string {
  const parts = ['producer', 'publisher', 'relay', 'consumer', 'postgres', 'rabbitmq', 'other', 'total'];
  const rows = entries
    .filter((e) => e.runs.some((r) => r.metrics['cpu.total'] !== undefined))
    .map((e) => [
      `${e.workload} / ${e.variant}`,
      ...parts.map((p) => {
        const s = metric(e.runs, `cpu.${p}`);
        return Number.isFinite(s.median) ? s.median.toFixed(3) : '';
      }),
      fmtNumber(metric(e.runs, 'machineBusyPct').median),
      steal(metric(e.runs, 'machineStealPct').median),
    ]);
  const titles = ['Workload / variant', ...parts, 'busy %', 'steal %'];
  const widths = titles.map((t, i) => Math.max(t.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [line(titles), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}
