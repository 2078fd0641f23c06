/**
 * The former `bench:relay`: 20,000 committed rows, our relay alone drains them to RabbitMQ (publisher
 * confirms, rows marked sent), a plain amqplib consumer acks them. Events/s for "all marked sent" and
 * "all received". (The clock now starts when the relay is woken, after its boot, not before the boot.)
 */
import { fmtRate, fmtRss, fmtSpread, metric, type Runs, type Workload } from '../lib/report';
import { runDrain } from './drain';

export const relay: Workload = {
  name: 'relay',
  title: 'Relay backlog (former bench:relay)',
  variants: () => ['ours'],
  run: (_variant, context) =>
    runDrain('relay', { relay: 'ours', consumer: 'plain', rows: context.options.relayRows, inbox: false, recordTimes: false }, context),
  summarize(runs: Runs, options) {
    const title = `Relay backlog (${options.relayRows.toLocaleString('en-US')} rows, batch ${options.batchSize}, former bench:relay)`;
    const sent = metric(runs.ours, 'relayedPerSec');
    const received = metric(runs.ours, 'handledPerSec');
    return {
      rows: [
        { workload: title, variant: 'ours relay → plain consumer: all marked sent', throughput: fmtRate(sent, 'events/s'), spread: fmtSpread(sent), rss: fmtRss(runs.ours) },
        { workload: title, variant: 'ours relay → plain consumer: all received', throughput: fmtRate(received, 'events/s'), spread: fmtSpread(received) },
      ],
      targets: [],
    };
  },
};
