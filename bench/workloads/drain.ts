/**
 * A committed backlog drained by a relay into a consumer, both in processes of their own: the machinery
 * of the backlog workload (ours vs Limit B), the memory run (--big) and the former bench:relay.
 */
import { cpus } from 'node:os';
import { EVENT_NAME } from '../lib/contract';
import { CpuMeter } from '../lib/cpu';
import { countRows, createTables, fillOutbox, lastSentAt, outboxStatus } from '../lib/database';
import { check, countChecks, inboxTable, messagesLeft, Namespace, type Check, type HandledCounts } from '../lib/helpers';
import { ChildHandle, peakRssMb, type HeapSample } from '../lib/processes';
import type { RunContext, VariantRun } from '../lib/report';

export interface DrainSpec {
  relay: 'ours' | 'limit-b';
  consumer: 'ours' | 'plain';
  rows: number;
  /** Our consumer: handlers with the inbox. */
  inbox: boolean;
  /** Keep per-message handling times (not needed, and 8 bytes a message, for big runs). */
  recordTimes: boolean;
  /** Sample both processes' RSS every this many ms (for the memory run). */
  rssSampleMs?: number;
  /**
   * Ask both processes for their live heap after a full garbage collection this many ms into the drain
   * and again at its end (for the memory run: a leak grows it, the collector's sawtooth does not).
   */
  heapCheckAfterMs?: number;
}

/** Both processes' heap after a full collection, early in the drain and at its end. */
export interface HeapChecks {
  early: { relay: HeapSample; consumer: HeapSample } | undefined;
  end: { relay: HeapSample; consumer: HeapSample };
}

export async function runDrain(label: string, spec: DrainSpec, context: RunContext): Promise<VariantRun> {
  const { options, harness, resources } = context;
  const ns = new Namespace(label);
  await createTables(resources, ns.schema, { outbox: true, inbox: true });
  resources.exchange(ns.exchange);
  const tag = `${label}-r${context.round}`;
  const children: ChildHandle[] = [];
  try {
    // The consumer first: its queue must be bound before anything is published.
    let consumer: ChildHandle;
    let queues: string[];
    if (spec.consumer === 'ours') {
      consumer = await ChildHandle.start(
        harness,
        'ours-consumer',
        `${tag}-consumer`,
        {
          exchange: ns.exchange,
          schema: ns.schema,
          serviceName: `${ns.serviceName}-c`,
          queue: ns.queue('handler'),
          inbox: spec.inbox,
          prefetch: options.prefetch,
          ackDelayMs: options.ackDelayMs,
          expected: spec.rows,
          recordTimes: spec.recordTimes,
        },
        { profile: true, exposeGc: spec.heapCheckAfterMs !== undefined },
      );
      queues = consumer.ready.queues as string[];
      resources.queue(...queues);
    } else {
      const queue = ns.queue('sink');
      queues = [resources.queue(queue)];
      consumer = await ChildHandle.start(harness, 'plain-consumer', `${tag}-consumer`, {
        exchange: ns.exchange,
        queue,
        bindingKey: EVENT_NAME,
        prefetch: options.prefetch,
        expected: spec.rows,
        recordTimes: spec.recordTimes,
      });
    }
    children.push(consumer);

    // The relay idles on an empty outbox (ours: a long poll interval, so only `go` wakes it).
    const relay =
      spec.relay === 'ours'
        ? await ChildHandle.start(
            harness,
            'ours-relay',
            `${tag}-relay`,
            { exchange: ns.exchange, schema: ns.schema, serviceName: ns.serviceName, batchSize: options.batchSize, pollIntervalMs: 3_600_000 },
            { profile: true, exposeGc: spec.heapCheckAfterMs !== undefined },
          )
        : await ChildHandle.start(harness, 'raw-relay', `${tag}-relay`, { exchange: ns.exchange, schema: ns.schema, batchSize: options.batchSize, idlePollMs: 100 });
    children.push(relay);

    context.log(`filling the outbox with ${spec.rows.toLocaleString('en-US')} rows`);
    await fillOutbox(ns.schema, spec.rows);

    if (spec.rssSampleMs) {
      relay.sampleRss(spec.rssSampleMs);
      consumer.sampleRss(spec.rssSampleMs);
    }
    const pids = { relay: relay.pid, consumer: consumer.pid };
    const cpuBefore = context.cpu.sample(pids);
    relay.send({ type: 'go' });
    const drained = consumer.next('done', Math.max(300_000, spec.rows * 5));
    let early: HeapChecks['early'];
    if (spec.heapCheckAfterMs !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      const inTime = await Promise.race([
        drained.then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), spec.heapCheckAfterMs))),
      ]);
      clearTimeout(timer);
      if (inTime) early = { relay: await relay.heap(), consumer: await consumer.heap() };
    }
    await drained;
    const cpuAfter = context.cpu.sample(pids);
    const heapChecks: HeapChecks | undefined =
      spec.heapCheckAfterMs !== undefined ? { early, end: { relay: await relay.heap(), consumer: await consumer.heap() } } : undefined;
    await new Promise((resolve) => setTimeout(resolve, 300));
    relay.stopSampling();
    consumer.stopSampling();

    const relayed = await relay.stop();
    const consumed = await consumer.stop();
    const t0 = relayed.t0 as number;
    const status = await outboxStatus(ns.schema);
    const sentAt = await lastSentAt(ns.schema);
    const checks: Check[] = [check(`${label}: outbox rows sent`, spec.rows, status.sent ?? 0), ...countChecks(label, spec.rows, consumed.counts as HandledCounts)];
    if (spec.consumer === 'ours') {
      // The variant ran with the inbox it names.
      checks.push(check(`${label}: inbox records`, spec.inbox ? spec.rows : 0, await countRows(inboxTable(ns.schema))));
    }
    // Both stopped, every message handled acked: one still queued is a duplicate, retry or dead letter the counts missed.
    checks.push(check(`${label}: messages left in the queues`, 0, await messagesLeft(queues)));
    return {
      metrics: {
        handledPerSec: spec.rows / (((consumed.last as number) - t0) / 1_000),
        relayedPerSec: spec.rows / ((sentAt - t0) / 1_000),
        'rss.relay': peakRssMb(relayed),
        'rss.consumer': peakRssMb(consumed),
        ...CpuMeter.perEvent(cpuBefore, cpuAfter, spec.rows, cpus().length),
      },
      checks,
      details: spec.rssSampleMs ? { t0, rssRelay: relay.rssSamples, rssConsumer: consumer.rssSamples, heapChecks } : undefined,
    };
  } finally {
    for (const child of children) child.kill();
  }
}
