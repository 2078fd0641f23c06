/**
 * Steady load (ours 1) and Baseline C: N business transactions at a concurrency, each inserting an
 * order row and — depending on the variant — publishing one integration event.
 *
 * - baseline-c  the transaction alone, no library (commits/s is the yardstick);
 * - dual-write  commit, then publish directly with amqplib (awaiting the confirm), plain consumer;
 * - hand-outbox the same outbox row written by hand (one more query() in the transaction), no relay:
 *               what the row costs without the library, beside ours-commit-only;
 * - hand-pipeline the hand-written row, relayed by Limit B's hand-written relay (a process of its own,
 *               pausing HAND_RELAY_IDLE_MS when a claim finds nothing) to a plain consumer: what a team
 *               would build instead of the library, beside ours-no-inbox;
 * - hand-pipeline-inbox the same, the plain consumer with a hand-written inbox (a transaction per message
 *               recording its id, 10 at once): beside ours, whose inbox is on by default;
 * - ours        IntegrationEventPublisher.publish() in the transaction, relay in the producer process,
 *               our consumer (inbox on, the default) in another process;
 * - ours-no-inbox  ours with the consumer's inbox off (`inbox: false`): what idempotent consumption
 *               costs in this workload (a diagnostic row; the bound printed with the target is for a
 *               client without one);
 * - ours-cqrs   the same through the CommandBus: AggregateRoot + @EventsHandler that publishes;
 * - ours-commit-only  publish() with the relay off and no consumer: what the outbox row alone costs the
 *               commit (a diagnostic row: the delivery's CPU is not competing with the transactions).
 */
import { cpus } from 'node:os';
import { fmtLatency, fmtMs, fmtRate, fmtRatio, fmtRss, fmtSpread, leftAtLastCommit, metric, ratio, type Runs, type Workload } from '../lib/report';
import { HAND_RELAY_IDLE_MS, runTransactions } from './transactions';

const MODES = { 'baseline-c': 'plain', 'dual-write': 'dual-write', 'hand-outbox': 'hand-outbox', 'hand-pipeline': 'hand-outbox', 'hand-pipeline-inbox': 'hand-outbox', ours: 'ours', 'ours-no-inbox': 'ours', 'ours-cqrs': 'ours-cqrs', 'ours-commit-only': 'ours-commit-only' } as const;
const CONSUMERS = { 'baseline-c': 'none', 'dual-write': 'plain', 'hand-outbox': 'none', 'hand-pipeline': 'plain', 'hand-pipeline-inbox': 'plain', ours: 'ours', 'ours-no-inbox': 'ours', 'ours-cqrs': 'ours', 'ours-commit-only': 'none' } as const;
const LABELS: Record<string, string> = {
  'baseline-c': 'C: transaction, no event',
  'dual-write': 'C: dual write (commit, then publish)',
  'hand-outbox': 'C: hand-written outbox row, nothing relays it',
  'hand-pipeline': 'C: hand-written outbox row, relay (Limit B\'s) and plain consumer',
  'hand-pipeline-inbox': 'C: the same, the consumer with a hand-written inbox',
  ours: 'ours: publish() in the transaction',
  'ours-no-inbox': 'ours: publish(), consumer with inbox: false',
  'ours-cqrs': 'ours: cqrs bridge (@EventsHandler)',
  'ours-commit-only': 'ours: publish(), relay and consumer off',
};

export const steady: Workload = {
  name: 'steady',
  title: 'Steady load',
  variants: () => Object.keys(MODES),
  run: (variant, context) =>
    runTransactions(
      variant,
      {
        mode: MODES[variant as keyof typeof MODES],
        consumer: CONSUMERS[variant as keyof typeof CONSUMERS],
        count: context.options.transactions,
        warmup: context.options.warmup,
        concurrency: context.options.concurrency,
        inbox: variant !== 'ours-no-inbox',
        ...(variant.startsWith('hand-pipeline') ? { handRelay: { idlePollMs: HAND_RELAY_IDLE_MS } } : {}),
        handInbox: variant === 'hand-pipeline-inbox',
      },
      context,
    ),
  summarize(runs: Runs, options, all) {
    // Upper bounds on the ratio, from Floor D, Limit A and Limit B (when they ran). A transaction that
    // also writes the outbox row costs at least C's own CPU (its producer's and PostgreSQL's: not the rest
    // of the machine, nor steal, nor the idle broker's, which the delivery counts) plus what PostgreSQL alone spends on that row, whatever
    // the client; delivering its event costs at least the cheaper delivery measured here: Limit A's
    // (the broker, raw amqplib publishing and consuming) or Limit B's (the broker, a hand-written relay
    // in batches, a plain consumer; its claims and marks left out). With every core 100 % busy no client
    // gets past cores ÷ (C's commits/s × that cost).
    const sum = (runsOf: Runs[string] | undefined, keys: readonly string[]): number =>
      runsOf ? keys.reduce((total, key) => total + metric(runsOf, `cpu.${key}`).median, 0) : NaN;
    const rowMs = all.floor?.order && all.floor['order-outbox']
      ? Math.max(0, metric(all.floor['order-outbox'], 'cpu.postgres').median - metric(all.floor.order, 'cpu.postgres').median)
      : NaN;
    const deliveries = [
      { name: 'Limit A', ms: sum(all.broker?.amqplib, ['rabbitmq', 'publisher', 'consumer']) },
      { name: 'Limit B', ms: sum(all.backlog?.['limit-b'], ['rabbitmq', 'relay', 'consumer']) },
    ].filter((delivery) => Number.isFinite(delivery.ms));
    const delivery = deliveries.sort((a, b) => a.ms - b.ms)[0];
    const cOwnMs = sum(runs['baseline-c'], ['producer', 'postgres']);
    const cRate = metric(runs['baseline-c'], 'commitsPerSec').median;
    const cap = (extraMs: number): string => `≤ ${((cpus().length * 1_000) / (cRate * (cOwnMs + extraMs))).toFixed(2)}×`;
    const commitBound = Number.isFinite(rowMs) && cOwnMs > 0 && cRate > 0
      ? `; bound with every core 100 % busy, from Floor D (the commit): ${cap(rowMs)} (C's own ${cOwnMs.toFixed(3)} ms of CPU per transaction + PostgreSQL's ${rowMs.toFixed(3)} ms for the outbox row)`
      : '';
    const bound = commitBound && delivery
      ? `${commitBound}; with the event delivered, from ${delivery.name}: ${cap(rowMs + delivery.ms)} (+ ${delivery.ms.toFixed(3)} ms per message, ` +
        `the cheaper of ${deliveries.map((d) => `${d.name}'s ${d.ms.toFixed(3)}`).join(' and ')}: the broker and its clients)`
      : commitBound;
    const title = `Steady load (${options.transactions.toLocaleString('en-US')} tx, concurrency ${options.concurrency})`;
    const rows = Object.keys(MODES).map((variant) => {
      const commits = metric(runs[variant], 'commitsPerSec');
      const consumed = CONSUMERS[variant as keyof typeof MODES] !== 'none';
      return {
        workload: title,
        variant: LABELS[variant]!,
        throughput: fmtRate(commits, 'commits/s'),
        spread: fmtSpread(commits),
        ratio: variant === 'baseline-c' ? '1.00× C' : fmtRatio(ratio(runs[variant], runs['baseline-c'], 'commitsPerSec'), 'C'),
        latency: consumed ? fmtLatency(runs[variant]) : '',
        drain: consumed ? `${fmtMs(metric(runs[variant], 'drainMs'))} ms ${leftAtLastCommit(runs[variant])}` : '',
        rss: fmtRss(runs[variant]),
      };
    });
    const targets = (['ours', 'ours-cqrs'] as const).map((variant) => {
      const r = ratio(runs[variant], runs['baseline-c'], 'commitsPerSec');
      return {
        name: `Steady load, ${variant === 'ours' ? 'publish()' : 'cqrs bridge'}: commits/s vs Baseline C`,
        target: '≥ 0.90×',
        measured:
          `${r.median.toFixed(2)}× (${fmtRate(metric(runs[variant], 'commitsPerSec'), '/s')} vs ${fmtRate(metric(runs['baseline-c'], 'commitsPerSec'), '/s')}; ` +
          `for reference: dual write ${ratio(runs['dual-write'], runs['baseline-c'], 'commitsPerSec').median.toFixed(2)}×, ` +
          `ours with the consumer's inbox off ${ratio(runs['ours-no-inbox'], runs['baseline-c'], 'commitsPerSec').median.toFixed(2)}×, ` +
          `ours with relay and consumer off ${ratio(runs['ours-commit-only'], runs['baseline-c'], 'commitsPerSec').median.toFixed(2)}×, ` +
          `hand-written outbox row alone ${ratio(runs['hand-outbox'], runs['baseline-c'], 'commitsPerSec').median.toFixed(2)}×, ` +
          `hand-written row, relay and consumer ${ratio(runs['hand-pipeline'], runs['baseline-c'], 'commitsPerSec').median.toFixed(2)}× ` +
          `(with a hand-written inbox ${ratio(runs['hand-pipeline-inbox'], runs['baseline-c'], 'commitsPerSec').median.toFixed(2)}×)` +
          `${bound})`,
        met: r.median >= 0.9,
      };
    });
    return { rows, targets };
  },
};
