/**
 * The former `bench:retry`: 1,000 messages whose handler always fails go through all their attempts
 * (10, backoff 10 → 100 ms) to the dead-letter queue while healthy messages keep arriving on the same
 * queue (~200/s). Seconds until every failing message is in the DLQ, and the latency commit → handler of
 * the healthy ones meanwhile. One service process (relay and consumer), as before.
 */
import { createTables } from '../lib/database';
import { check, latencySummary, Namespace } from '../lib/helpers';
import { ChildHandle, peakRssMb } from '../lib/processes';
import { fmtLatency, fmtNumber, fmtRss, fmtSpread, metric, type Runs, type VariantRun, type Workload } from '../lib/report';

const MAX_ATTEMPTS = 10;

export const retry: Workload = {
  name: 'retry',
  title: 'Retries to the DLQ under load (former bench:retry)',
  variants: () => ['ours'],
  rounds: () => 1,
  async run(_variant, context): Promise<VariantRun> {
    const { options, harness, resources } = context;
    const ns = new Namespace('retry');
    await createTables(resources, ns.schema, { outbox: true, inbox: true });
    resources.exchange(ns.exchange);
    const child = await ChildHandle.start(
      harness,
      'ours-retry',
      `retry-r${context.round}`,
      { exchange: ns.exchange, schema: ns.schema, serviceName: ns.serviceName, failing: options.retryFailing, healthyRate: options.retryRate, maxAttempts: MAX_ATTEMPTS, ackDelayMs: options.ackDelayMs },
      { profile: true },
    );
    resources.queue(...(child.ready.queues as string[]));
    try {
      child.send({ type: 'go' });
      const result = await child.stop(600_000);
      const healthy = latencySummary(result.healthyLatencies as number[]);
      return {
        metrics: {
          secondsToDlq: result.seconds as number,
          healthyHandled: healthy.count,
          'latency.p50': healthy.p50,
          'latency.p95': healthy.p95,
          'latency.p99': healthy.p99,
          'latency.max': healthy.max,
          'rss.service': peakRssMb(result),
        },
        checks: [
          check('retry: messages in the dead-letter queue', options.retryFailing, result.dlqDepth as number),
          check('retry: handler calls of failing messages', options.retryFailing * MAX_ATTEMPTS, result.failingCalls as number),
          check('retry: healthy messages handled', result.healthySent as number, healthy.count),
        ],
      };
    } finally {
      child.kill();
    }
  },
  summarize(runs: Runs, options) {
    const title = `Retries: ${fmtNumber(options.retryFailing)} always-failing → DLQ, healthy at ~${options.retryRate}/s (former bench:retry)`;
    const seconds = metric(runs.ours, 'secondsToDlq');
    return {
      rows: [
        {
          workload: title,
          variant: `all in the DLQ after (${MAX_ATTEMPTS} attempts, 10→100 ms) / healthy latency`,
          throughput: `${seconds.median.toFixed(2)} s`,
          spread: fmtSpread(seconds, 2),
          latency: fmtLatency(runs.ours),
          rss: fmtRss(runs.ours),
        },
      ],
      targets: [],
    };
  },
};
