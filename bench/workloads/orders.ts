/**
 * The former `bench:orders`: orders through the CommandBus (aggregate → domain event handled in the
 * transaction → integration event in the outbox) with publishing on vs off (the domain event is still
 * raised and handled; nothing is written to the outbox). The relay runs; a bound queue nobody reads
 * takes the messages, as before. No consumer.
 */
import { fmtRate, fmtRatio, fmtRss, fmtSpread, metric, ratio, type Runs, type Workload } from '../lib/report';
import { runTransactions } from './transactions';

export const orders: Workload = {
  name: 'orders',
  title: 'Orders through the CommandBus (former bench:orders)',
  variants: () => ['publishing-off', 'publishing-on'],
  run: (variant, context) =>
    runTransactions(
      `orders-${variant}`,
      {
        mode: variant === 'publishing-on' ? 'ours-cqrs' : 'ours-cqrs-off',
        consumer: 'sink',
        count: context.options.orders,
        warmup: context.options.warmup,
        concurrency: context.options.concurrency,
      },
      context,
    ),
  summarize(runs: Runs, options) {
    const title = `Orders via CommandBus (${options.orders.toLocaleString('en-US')} per round, former bench:orders)`;
    const rows = ['publishing-off', 'publishing-on'].map((variant) => {
      const rate = metric(runs[variant], 'commitsPerSec');
      return {
        workload: title,
        variant: variant === 'publishing-on' ? 'publishing on' : 'publishing off',
        throughput: fmtRate(rate, 'orders/s'),
        spread: fmtSpread(rate),
        ratio: variant === 'publishing-on' ? fmtRatio(ratio(runs['publishing-on'], runs['publishing-off'], 'commitsPerSec'), 'off') : '',
        rss: fmtRss(runs[variant]),
      };
    });
    return { rows, targets: [] };
  },
};
