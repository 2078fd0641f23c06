/**
 * Steady load (ours 1) and Baseline C: N business transactions at a concurrency, each inserting an
 * order row and — depending on the variant — publishing one integration event.
 *
 * - baseline-c  the transaction alone, no library (commits/s is the yardstick);
 * - dual-write  commit, then publish directly with amqplib (awaiting the confirm), plain consumer;
 * - ours        IntegrationEventPublisher.publish() in the transaction, relay in the producer process,
 *               our consumer (inbox on, the default) in another process;
 * - ours-no-inbox  ours with the consumer's inbox off (`inbox: false`): what idempotent consumption
 *               costs in this workload (a diagnostic row; the bound printed with the target is for a
 *               client without one);
 * - ours-cqrs   the same through the CommandBus: AggregateRoot + @EventsHandler that publishes;
 * - ours-commit-only  publish() with the relay off and no consumer: what the outbox row alone costs the
 *               commit (a diagnostic row: the delivery's CPU is not competing with the transactions).
 */
import { fmtLatency, fmtMs, fmtRate, fmtRatio, fmtRss, fmtSpread, leftAtLastCommit, metric, ratio, type Runs, type Workload } from '../lib/report';
import { runTransactions } from './transactions';

const MODES = { 'baseline-c': 'plain', 'dual-write': 'dual-write', ours: 'ours', 'ours-no-inbox': 'ours', 'ours-cqrs': 'ours-cqrs', 'ours-commit-only': 'ours-commit-only' } as const;
const CONSUMERS = { 'baseline-c': 'none', 'dual-write': 'plain', ours: 'ours', 'ours-no-inbox': 'ours', 'ours-cqrs': 'ours', 'ours-commit-only': 'none' } as const;
const LABELS: Record<string, string> = {
  'baseline-c': 'C: transaction, no event',
  'dual-write': 'C: dual write (commit, then publish)',
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
      },
      context,
    ),
  summarize(runs: Runs, options, all) {
    // Bounds from Floor D and Limit A (when they ran). A transaction that also writes the outbox row costs
    // at least C's CPU plus what PostgreSQL alone spends on that row, whatever the client; delivering its
    // event costs what Limit A spends per message (the broker, and raw amqplib publishing and consuming
    // it), for a relay and a consumer as lean as raw amqplib. At C's share of the cores that caps the
    // ratio at C ÷ (C + row [+ message]); with the cores 100 % busy, at that ÷ C's busy share.
    const rowMs = all.floor?.order && all.floor['order-outbox']
      ? Math.max(0, metric(all.floor['order-outbox'], 'cpu.postgres').median - metric(all.floor.order, 'cpu.postgres').median)
      : NaN;
    // The broker's CPU and its two clients' (not the harness or the rest of the machine).
    const messageMs = all.broker?.amqplib
      ? (['cpu.rabbitmq', 'cpu.publisher', 'cpu.consumer'] as const).reduce((sum, key) => sum + metric(all.broker!.amqplib, key).median, 0)
      : NaN;
    const cMs = metric(runs['baseline-c'], 'cpu.total').median;
    const cBusy = metric(runs['baseline-c'], 'machineBusyPct').median / 100;
    const capAt = (extraMs: number): string => {
      const atCBusy = cMs / (cMs + extraMs);
      return `≤ ${atCBusy.toFixed(2)}× at C's ${(cBusy * 100).toFixed(0)} % busy, ≤ ${(atCBusy / cBusy).toFixed(2)}× at 100 %`;
    };
    const commitBound = Number.isFinite(rowMs) && cBusy > 0
      ? `; bound from Floor D (the commit): ${capAt(rowMs)} (C's ${cMs.toFixed(3)} ms of CPU per transaction + PostgreSQL's ${rowMs.toFixed(3)} ms for the outbox row)`
      : '';
    const bound = commitBound && Number.isFinite(messageMs)
      ? `${commitBound}; with the event delivered, from Limit A: ${capAt(rowMs + messageMs)} (+ ${messageMs.toFixed(3)} ms per message for the broker and raw amqplib clients)`
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
          `ours with relay and consumer off ${ratio(runs['ours-commit-only'], runs['baseline-c'], 'commitsPerSec').median.toFixed(2)}×` +
          `${bound})`,
        met: r.median >= 0.9,
      };
    });
    return { rows, targets };
  },
};
