/**
 * Latency at a paced rate (ours 2): events at a fixed rate (default 1,000/s), p50/p99 commit → handler.
 * The reference is raw amqplib at the same rate: publish on a confirm channel → plain consumer. Ours
 * also runs at a lower rate (default 200/s): where the pipeline keeps up, this is its own latency; at a
 * rate it cannot sustain, latency only measures how long the queue has grown. With --sweep-rates, ours
 * runs at those rates too, and the target line names the highest rate tried up to which every rate tried
 * was achieved with its p99 within the target: the rate this machine carries within it.
 * At the main rate, for reference, the same pipeline with the consumer's inbox off (`ours-no-inbox`),
 * and what a team would write instead (steady.ts): the outbox row written by hand, relayed by Limit B's
 * relay (pausing PACED_HAND_RELAY_IDLE_MS after an empty claim) to a plain consumer (`hand-pipeline`,
 * beside ours-no-inbox), and the same with a hand-written inbox (`hand-pipeline-inbox`, beside ours,
 * whose inbox is on by default).
 * The counted events start once the warm-up's were all handled. Every variant runs beside an idle
 * stall probe (lib/machine-stalls.ts), which tells the machine's own stalls from the pipeline's tail.
 */
import { EVENT_NAME } from '../lib/contract';
import { countChecks, check, lastOf, latencies, latencySummary, messagesLeft, Namespace, type HandledCounts } from '../lib/helpers';
import { MachineStalls, STALL_MS, writeTimeline } from '../lib/machine-stalls';
import { ChildHandle, peakRssMb } from '../lib/processes';
import { fmtLatency, fmtMs, fmtNumber, fmtRate, fmtRss, fmtSpread, leftAtLastCommit, metric, type RunContext, type Runs, type VariantRun, type Workload } from '../lib/report';
import { PACED_HAND_RELAY_IDLE_MS, runTransactions } from './transactions';

/**
 * Whether most rounds carried `rate` within the target, each round judged whole: its p99 within 25 ms
 * and the rate achieved (latency runs from the commit, so a producer that cannot reach the rate shows
 * only the events it did commit). Medians taken apart could pair one round's p99 with another's rate.
 */
function withinTarget(runs: VariantRun[] | undefined, rate: number): boolean {
  const rounds = runs ?? [];
  const within = rounds.filter((run) => (run.metrics['latency.p99'] ?? Infinity) <= 25 && (run.metrics.achievedRate ?? 0) >= rate * 0.98);
  return rounds.length > 0 && within.length * 2 > rounds.length;
}

async function rawPaced(context: RunContext): Promise<VariantRun> {
  const { options, harness, resources } = context;
  const ns = new Namespace('paced-raw');
  const count = options.rate * options.pacedSeconds;
  const queue = ns.queue('sink');
  resources.exchange(ns.exchange);
  resources.queue(queue);
  const tag = `paced-amqplib-r${context.round}`;
  const consumer = await ChildHandle.start(harness, 'plain-consumer', `${tag}-consumer`, {
    exchange: ns.exchange,
    queue,
    bindingKey: EVENT_NAME,
    prefetch: options.prefetch,
    expected: count,
  });
  let publisher: ChildHandle | undefined;
  let probe: MachineStalls | undefined;
  try {
    publisher = await ChildHandle.start(harness, 'raw-publisher', `${tag}-publisher`, { exchange: ns.exchange, messages: count, window: options.window, rate: options.rate });
    probe = await MachineStalls.start(harness, tag);
    probe.go();
    publisher.send({ type: 'go' });
    await consumer.next('done', 600_000);
    const published = await publisher.next('published');
    const pub = await publisher.stop();
    const con = await consumer.stop();
    const probed = await probe.stop();
    const sentAt = pub.sentAt as Float64Array;
    const handledAt = con.handledAt as Float64Array;
    const summary = latencySummary(latencies(sentAt, handledAt, 0, count));
    writeTimeline(harness, tag, { counted: count, committedAt: sentAt, handledAt, probe: probed });
    return {
      metrics: {
        achievedRate: count / (((published.tConfirmed as number) - (published.t0 as number)) / 1_000),
        'latency.p50': summary.p50,
        'latency.p95': summary.p95,
        'latency.p99': summary.p99,
        'latency.max': summary.max,
        'rss.publisher': peakRssMb(pub),
        'rss.consumer': peakRssMb(con),
        ...MachineStalls.summarize(probed, published.t0 as number, lastOf(handledAt, 0, count)),
      },
      checks: [
        check('paced amqplib: nacked', 0, pub.nacked as number),
        ...countChecks('paced amqplib', count, con.counts as HandledCounts),
        check('paced amqplib: messages left in the queue', 0, await messagesLeft([queue])),
      ],
    };
  } finally {
    publisher?.kill();
    consumer.kill();
    probe?.kill();
  }
}

/** `ours-at-<rate>` for each of --sweep-rates (rates equal to the main or low rate are not run twice). */
function sweptVariants(options: { rate: number; lowRate: number; sweepRates: readonly number[] }): string[] {
  const rates = [...new Set(options.sweepRates)].filter((rate) => rate !== options.rate && rate !== options.lowRate);
  return rates.sort((a, b) => a - b).map((rate) => `ours-at-${rate}`);
}

function sweptRate(variant: string): number {
  return Number(variant.slice('ours-at-'.length));
}

/** The variants run at the main rate only, for reference: not the target's, not in the sweep. */
const REFERENCES = ['ours-no-inbox', 'hand-pipeline', 'hand-pipeline-inbox'] as const;

/** "2 (53 / 21)": probe samples ≥ STALL_MS, and its longest timer delay and flush (ms), medians of rounds. */
function stallsOf(runs: VariantRun[] | undefined): string {
  return `${fmtNumber(metric(runs, 'stall.count').median)} (${fmtMs(metric(runs, 'stall.timerMaxMs'))} / ${fmtMs(metric(runs, 'stall.syncMaxMs'))})`;
}

/**
 * "ours with inbox: false p99 19.0 ms (within), hand-written pipeline …": the reference variants at the
 * main rate, each round judged as the target judges ours'.
 */
function references(runs: Runs, rate: number): string {
  const labels: Record<(typeof REFERENCES)[number], string> = {
    'ours-no-inbox': 'ours with inbox: false',
    'hand-pipeline': 'hand-written pipeline',
    'hand-pipeline-inbox': 'hand-written pipeline with a hand-written inbox',
  };
  return REFERENCES.map((variant) => {
    const achieved = metric(runs[variant], 'achievedRate').median;
    const rateNote = achieved >= rate * 0.98 ? '' : `, ${fmtNumber(achieved)}/s achieved`;
    return (
      `${labels[variant]} p99 ${fmtMs(metric(runs[variant], 'latency.p99'))} ms${rateNote} ` +
      `(${withinTarget(runs[variant], rate) ? 'within' : 'not within'} 25 ms)${warmupTimedOut(runs[variant])} [probe ${stallsOf(runs[variant])}]`
    );
  }).join(', ');
}

/** " (not all within the wait in 1 of 3 rounds)" when the wait for the warm-up's events timed out. */
function warmupTimedOut(runs: VariantRun[] | undefined): string {
  const timedOut = metric(runs, 'warmup.timedOut').rounds.filter((n) => n === 1).length;
  return timedOut > 0 ? ` (not all within the wait in ${timedOut} of ${runs?.length ?? 0} rounds)` : '';
}

export const paced: Workload = {
  name: 'paced',
  title: 'Latency at a paced rate',
  variants: (options) => ['amqplib', 'ours', ...REFERENCES, 'ours-low', ...sweptVariants(options)],
  run: (variant, context) => {
    if (variant === 'amqplib') return rawPaced(context);
    const { options } = context;
    const rate =
      variant === 'ours' || (REFERENCES as readonly string[]).includes(variant) ? options.rate : variant === 'ours-low' ? options.lowRate : sweptRate(variant);
    const hand = variant.startsWith('hand-');
    return runTransactions(
      `paced-${variant}`,
      {
        mode: hand ? 'hand-outbox' : 'ours',
        consumer: hand ? 'plain' : 'ours',
        count: rate * options.pacedSeconds,
        // Paced warm-up: --paced-warmup-seconds at the same rate before the clock starts.
        warmup: rate * options.pacedWarmupSeconds,
        concurrency: options.concurrency,
        rate,
        inbox: variant !== 'ours-no-inbox',
        ...(hand ? { handRelay: { idlePollMs: PACED_HAND_RELAY_IDLE_MS } } : {}),
        handInbox: variant === 'hand-pipeline-inbox',
      },
      context,
    );
  },
  summarize(runs: Runs, options) {
    const title = `Paced ${fmtNumber(options.rate)} events/s for ${options.pacedSeconds} s`;
    const labels: Record<string, string> = {
      amqplib: 'A: raw amqplib publish → consume',
      ours: 'ours: publish() → relay → handler (inbox)',
      'ours-no-inbox': 'ours, consumer with inbox: false',
      'hand-pipeline': "hand-written outbox row, relay (Limit B's) and plain consumer",
      'hand-pipeline-inbox': 'the same, the consumer with a hand-written inbox',
      'ours-low': `ours at ${fmtNumber(options.lowRate)}/s (same pipeline)`,
    };
    const swept = sweptVariants(options);
    for (const variant of swept) labels[variant] = `ours at ${fmtNumber(sweptRate(variant))}/s (--sweep-rates)`;
    const rows = ['amqplib', 'ours', ...REFERENCES, 'ours-low', ...swept].map((variant) => ({
      workload: title,
      variant: labels[variant]!,
      throughput: fmtRate(metric(runs[variant], 'achievedRate'), 'events/s'),
      spread: `p99 ${fmtSpread(metric(runs[variant], 'latency.p99'), 1)}`,
      latency: fmtLatency(runs[variant]),
      drain: variant === 'amqplib' ? '' : `${fmtMs(metric(runs[variant], 'drainMs'))} ms ${leftAtLastCommit(runs[variant])}`,
      rss: fmtRss(runs[variant]),
    }));
    const p99 = metric(runs.ours, 'latency.p99');
    // The highest rate tried below which every rate tried (it included) was carried within the target
    // in most rounds (each round judged whole).
    const tried = [
      { rate: options.rate, variant: 'ours' },
      { rate: options.lowRate, variant: 'ours-low' },
      ...swept.map((variant) => ({ rate: sweptRate(variant), variant })),
    ]
      .sort((a, b) => a.rate - b.rate)
      .map(({ rate, variant }) => {
        const achieved = metric(runs[variant], 'achievedRate').median;
        const p99 = metric(runs[variant], 'latency.p99');
        return { rate, variant, achieved, p99, within: withinTarget(runs[variant], rate) };
      });
    const firstMiss = tried.findIndex(({ within }) => !within);
    const highest = firstMiss === 0 ? undefined : tried[(firstMiss === -1 ? tried.length : firstMiss) - 1]!.rate;
    const sweep =
      swept.length > 0
        ? `; rates tried: ${tried
            .map(
              ({ rate, variant, achieved, p99 }) =>
                `${fmtNumber(rate)}/s p99 ${fmtMs(p99)} ms${achieved >= rate * 0.98 ? '' : ` (${fmtNumber(achieved)}/s achieved)`} [probe ${stallsOf(runs[variant])}]`,
            )
            .join(', ')}; ` +
          (highest === undefined ? 'none within 25 ms' : `within 25 ms at every rate tried up to ${fmtNumber(highest)}/s`)
        : '';
    const targets = [
      {
        name: `Paced ${fmtNumber(options.rate)}/s: p99 commit → handler`,
        target: '≤ 25 ms',
        measured:
          `${fmtMs(p99)} ms, p50 ${fmtMs(metric(runs.ours, 'latency.p50'))} ms, at ${fmtNumber(metric(runs.ours, 'achievedRate').median)}/s achieved ` +
          `(raw amqplib p99 ${fmtMs(metric(runs.amqplib, 'latency.p99'))} ms; at ${fmtNumber(options.rate)}/s, ${references(runs, options.rate)}; ours at ${fmtNumber(options.lowRate)}/s: p99 ${fmtMs(metric(runs['ours-low'], 'latency.p99'))} ms; ` +
          `ours in its first ${options.pacedWarmupSeconds} s after boot, not counted: p50 ${fmtMs(metric(runs.ours, 'warmup.p50'))} / p99 ${fmtMs(metric(runs.ours, 'warmup.p99'))} ms, ` +
          `all handled ${fmtMs(metric(runs.ours, 'warmup.drainMs'))} ms after its last commit${warmupTimedOut(runs.ours)}` +
          `${sweep}; idle probe, samples ≥ ${STALL_MS} ms (longest timer delay / fdatasync, ms), median of rounds: ` +
          `during ours at ${fmtNumber(options.rate)}/s ${stallsOf(runs.ours)}, during raw amqplib ${stallsOf(runs.amqplib)})`,
        met: withinTarget(runs.ours, options.rate),
      },
    ];
    return { rows, targets };
  },
};
