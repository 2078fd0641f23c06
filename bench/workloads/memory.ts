/**
 * Memory (ours 5, --big): a 1,000,000-row backlog drained by our relay into our consumer, each in its
 * own process, their RSS sampled every second from /proc. "Flat" means: after the first 10 % of the
 * drain (JIT, pools and buffers warming up), max − min of RSS stays within 50 MB, for each process.
 * The trend (median RSS of the last 10 % of the drain − median of 10–20 %) tells a leak (it grows with
 * the rows) from the sawtooth of the garbage collector (it does not). So does the live heap: both
 * processes run with --expose-gc and report their heap in use right after a full collection 30 s into
 * the drain and at its end (RSS also holds garbage not yet collected; the live heap does not).
 */
import { fmtNumber, fmtRate, type Runs, type VariantRun, type Workload } from '../lib/report';
import { runDrain, type HeapChecks } from './drain';

/** When the first live-heap check is taken: warm (JIT, pools), and early in a 1,000,000-row drain. */
const HEAP_CHECK_AFTER_MS = 30_000;

const FLAT_MB = 50;
const signed = (mb: number) => `${mb >= 0 ? '+' : ''}${fmtNumber(mb)}`;

interface Flatness {
  startMb: number;
  warmMinMb: number;
  maxMb: number;
  endMb: number;
  growthMb: number;
  trendMb: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)]! : NaN;
}

function flatness(samples: Array<[number, number]>, t0: number, tEnd: number): Flatness {
  const after = t0 + (tEnd - t0) * 0.1;
  const warm = samples.filter(([t]) => t >= after && t <= tEnd).map(([, mb]) => mb);
  const all = samples.map(([, mb]) => mb);
  const warmMinMb = Math.min(...warm);
  const maxMb = Math.max(...warm);
  const within = (from: number, to: number) =>
    samples.filter(([t]) => t >= t0 + (tEnd - t0) * from && t <= t0 + (tEnd - t0) * to).map(([, mb]) => mb);
  const trendMb = median(within(0.9, 1)) - median(within(0.1, 0.2));
  return { startMb: all[0] ?? NaN, warmMinMb, maxMb, endMb: warm[warm.length - 1] ?? NaN, growthMb: maxMb - warmMinMb, trendMb };
}

export const memory: Workload = {
  name: 'memory',
  title: 'RSS through a big backlog',
  variants: () => ['ours'],
  rounds: () => 1,
  async run(_variant, context): Promise<VariantRun> {
    const { options } = context;
    const started = Date.now();
    const run = await runDrain(
      'memory',
      {
        relay: 'ours',
        consumer: 'ours',
        rows: options.bigRows,
        inbox: options.backlogInbox,
        recordTimes: false,
        rssSampleMs: 1_000,
        heapCheckAfterMs: HEAP_CHECK_AFTER_MS,
      },
      context,
    );
    const details = run.details as { t0: number; rssRelay: Array<[number, number]>; rssConsumer: Array<[number, number]>; heapChecks: HeapChecks };
    const { early, end } = details.heapChecks;
    const tEnd = details.t0 + (options.bigRows / run.metrics.handledPerSec!) * 1_000;
    const relay = flatness(details.rssRelay, details.t0, tEnd);
    const consumer = flatness(details.rssConsumer, details.t0, tEnd);
    context.log(`memory run took ${((Date.now() - started) / 1_000).toFixed(0)} s`);
    return {
      ...run,
      metrics: {
        ...run.metrics,
        'relay.growthMb': relay.growthMb,
        'consumer.growthMb': consumer.growthMb,
        'relay.trendMb': relay.trendMb,
        'consumer.trendMb': consumer.trendMb,
        'relay.startMb': relay.startMb,
        'relay.endMb': relay.endMb,
        'consumer.startMb': consumer.startMb,
        'consumer.endMb': consumer.endMb,
        // Without a full collection before it, a heap figure holds garbage too: not reported.
        'relay.heapEarlyMb': early?.relay.afterGc ? early.relay.heapUsedMb : NaN,
        'relay.heapEndMb': end.relay.afterGc ? end.relay.heapUsedMb : NaN,
        'consumer.heapEarlyMb': early?.consumer.afterGc ? early.consumer.heapUsedMb : NaN,
        'consumer.heapEndMb': end.consumer.afterGc ? end.consumer.heapUsedMb : NaN,
        'relay.externalEndMb': end.relay.externalMb,
        'consumer.externalEndMb': end.consumer.externalMb,
      },
    };
  },
  summarize(runs: Runs, options) {
    const run = runs.ours?.[0];
    if (!run) return { rows: [], targets: [] };
    const m = run.metrics;
    const title = `Memory: ${options.bigRows.toLocaleString('en-US')}-row backlog (--big)`;
    const line = (who: 'relay' | 'consumer') =>
      `${who}: start ${fmtNumber(m[`${who}.startMb`]!)} → end ${fmtNumber(m[`${who}.endMb`]!)} MB; after 10 %: max − min ${fmtNumber(m[`${who}.growthMb`]!)} MB, trend ${signed(m[`${who}.trendMb`]!)} MB`;
    const heap = (who: 'relay' | 'consumer') =>
      `${who}: live heap after a full GC ${fmtNumber(m[`${who}.heapEarlyMb`]!, 1)} MB ${HEAP_CHECK_AFTER_MS / 1_000} s in → ` +
      `${fmtNumber(m[`${who}.heapEndMb`]!, 1)} MB at the end (outside the heap: ${fmtNumber(m[`${who}.externalEndMb`]!)} MB)`;
    const rows = [
      {
        workload: title,
        variant: `ours relay → handler (${options.backlogInbox ? 'inbox' : 'inbox: false'})`,
        throughput: fmtRate({ median: m.handledPerSec!, min: NaN, max: NaN, spreadPct: 0, rounds: [m.handledPerSec!] }, 'rows/s'),
        spread: '(1 round)',
        rss: `relay ${fmtNumber(m['rss.relay']!)} / consumer ${fmtNumber(m['rss.consumer']!)}`,
      },
      { workload: title, variant: line('relay') },
      { workload: title, variant: line('consumer') },
      { workload: title, variant: heap('relay') },
      { workload: title, variant: heap('consumer') },
    ];
    const worst = Math.max(m['relay.growthMb']!, m['consumer.growthMb']!);
    return {
      rows,
      targets: [
        {
          name: `Memory: RSS flat through ${options.bigRows.toLocaleString('en-US')} rows`,
          target: `within ${FLAT_MB} MB`,
          measured:
            `max − min: relay ${fmtNumber(m['relay.growthMb']!)} MB, consumer ${fmtNumber(m['consumer.growthMb']!)} MB; ` +
            `trend: relay ${signed(m['relay.trendMb']!)} MB, consumer ${signed(m['consumer.trendMb']!)} MB (peak ${fmtNumber(m['rss.relay']!)} / ${fmtNumber(m['rss.consumer']!)} MB); ` +
            `live heap after a full GC, ${HEAP_CHECK_AFTER_MS / 1_000} s in → end: relay ${fmtNumber(m['relay.heapEarlyMb']!, 1)} → ${fmtNumber(m['relay.heapEndMb']!, 1)} MB, ` +
            `consumer ${fmtNumber(m['consumer.heapEarlyMb']!, 1)} → ${fmtNumber(m['consumer.heapEndMb']!, 1)} MB`,
          met: worst <= FLAT_MB,
        },
      ],
    };
  },
};
