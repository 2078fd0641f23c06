/**
 * Backlog drain (ours 3) and Limit B: 100,000 rows already committed in the outbox; a relay and a
 * consumer until every row is handled. Limit B is the minimal hand-written relay (claim with SKIP
 * LOCKED → publish with confirms → mark sent) feeding a plain amqplib consumer; ours is our relay
 * feeding our consumer (handlers without the inbox by default, as Limit B has none: --backlog-inbox).
 */
import { fmtRate, fmtRatio, fmtRss, fmtSpread, metric, ratio, type Runs, type Workload } from '../lib/report';
import { runDrain } from './drain';

export const backlog: Workload = {
  name: 'backlog',
  title: 'Backlog drain',
  variants: () => ['limit-b', 'ours'],
  run: (variant, context) =>
    runDrain(
      `backlog-${variant}`,
      {
        relay: variant === 'ours' ? 'ours' : 'limit-b',
        consumer: variant === 'ours' ? 'ours' : 'plain',
        rows: context.options.backlog,
        inbox: context.options.backlogInbox,
        recordTimes: false,
      },
      context,
    ),
  summarize(runs: Runs, options) {
    const title = `Backlog drain (${options.backlog.toLocaleString('en-US')} rows)`;
    const labels: Record<string, string> = {
      'limit-b': 'B: hand-written relay → plain consumer',
      ours: `ours: relay → handler (${options.backlogInbox ? 'inbox' : 'inbox: false'})`,
    };
    const rows = ['limit-b', 'ours'].flatMap((variant) => {
      const handled = metric(runs[variant], 'handledPerSec');
      const relayed = metric(runs[variant], 'relayedPerSec');
      return [
        {
          workload: title,
          variant: `${labels[variant]}: all handled`,
          throughput: fmtRate(handled, 'rows/s'),
          spread: fmtSpread(handled),
          ratio: variant === 'ours' ? fmtRatio(ratio(runs.ours, runs['limit-b'], 'handledPerSec'), 'B') : '',
          rss: fmtRss(runs[variant]),
        },
        {
          workload: title,
          variant: `${labels[variant]}: all marked sent`,
          throughput: fmtRate(relayed, 'rows/s'),
          spread: fmtSpread(relayed),
          ratio: variant === 'ours' ? fmtRatio(ratio(runs.ours, runs['limit-b'], 'relayedPerSec'), 'B') : '',
        },
      ];
    });
    const r = ratio(runs.ours, runs['limit-b'], 'handledPerSec');
    return {
      rows,
      targets: [
        {
          name: 'Backlog drain: rows/s (all handled) vs Limit B',
          target: '≥ 0.90×',
          measured: `${r.median.toFixed(2)}× (${fmtRate(metric(runs.ours, 'handledPerSec'), '/s')} vs ${fmtRate(metric(runs['limit-b'], 'handledPerSec'), '/s')})`,
          met: r.median >= 0.9,
        },
      ],
    };
  },
};
