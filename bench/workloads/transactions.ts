/**
 * The machinery shared by the workloads that drive business transactions (steady, paced, orders): a
 * producer process, and a consumer process that counts every event, then the numbers and the checks.
 */
import { cpus } from 'node:os';
import * as amqp from 'amqplib';
import { CpuMeter } from '../lib/cpu';
import { EVENT_NAME } from '../lib/contract';
import { countRows, createTables, outboxStatus } from '../lib/database';
import { check, countChecks, inboxTable, lastOf, latencies, latencySummary, messagesLeft, Namespace, outboxTable, RABBITMQ_URL, type Check, type HandledCounts } from '../lib/helpers';
import { MachineStalls, writeTimeline } from '../lib/machine-stalls';
import { ChildHandle, peakRssMb } from '../lib/processes';
import type { RunContext, VariantRun } from '../lib/report';
import { HAND_INBOX_CONNECTIONS } from '../roles/plain-consumer';
import type { ProducerMode } from '../roles/producer';

export interface TransactionsSpec {
  mode: ProducerMode;
  count: number;
  warmup: number;
  concurrency: number;
  rate?: number;
  /** Who receives the events: our consumer (inbox on), a plain amqplib consumer, or a bound queue nobody reads. */
  consumer: 'ours' | 'plain' | 'sink' | 'none';
  /** Our consumer's inbox (idempotent consumption): on unless false, as in the library. */
  inbox?: boolean;
  /**
   * Limit B's hand-written relay (claim, publish with confirms, mark sent; a short pause when the
   * claim finds nothing), in a process of its own, for the producer's hand-written outbox rows.
   */
  handRelay?: { idlePollMs: number };
  /** The plain consumer with a hand-written inbox (a transaction per message recording its id), as many at once as ours runs calls. */
  handInbox?: boolean;
}

async function pipelineBacklog(schema: string, outbox: boolean, queue: string): Promise<{ outboxPending: number; queueReady: number }> {
  const outboxPending = outbox ? ((await outboxStatus(schema)).pending ?? 0) : 0;
  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createChannel();
  const queueReady = (await channel.checkQueue(queue)).messageCount;
  await connection.close();
  return { outboxPending, queueReady };
}

async function declareSink(exchange: string, queue: string): Promise<void> {
  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'topic', { durable: true });
  await channel.assertQueue(queue, { durable: true });
  await channel.bindQueue(queue, exchange, EVENT_NAME);
  await connection.close();
}

/** The hand-written relay's pause after a claim that found nothing: the library's shortest poll interval. */
export const HAND_RELAY_IDLE_MS = 10;
/**
 * The same pause in the paced workload, whose figure is latency: there the pause is in every event's
 * latency (ours publishes at each commit, pausing for nothing), and a relay written for latency would
 * claim again soon. 1 ms, so that the reference is the strongest hand-written relay of this shape.
 */
export const PACED_HAND_RELAY_IDLE_MS = 1;

/** Paced: the longest wait, after the warm-up's last commit, for its events to be all handled. */
const WARM_DRAIN_MAX_MS = 30_000;

export async function runTransactions(label: string, spec: TransactionsSpec, context: RunContext): Promise<VariantRun> {
  const { options, harness, resources } = context;
  const ns = new Namespace(label);
  const ours = spec.mode.startsWith('ours');
  const total = spec.count + spec.warmup;
  const publishes = spec.mode !== 'plain' && spec.mode !== 'ours-cqrs-off';
  const outbox = ours || spec.mode === 'hand-outbox';
  await createTables(resources, ns.schema, { orders: true, outbox, inbox: ours || spec.handInbox === true });
  resources.exchange(ns.exchange);
  const tag = `${label}-r${context.round}`;
  const children: ChildHandle[] = [];
  // Paced runs: an idle process watches the machine meanwhile.
  let probe: MachineStalls | undefined;

  try {
    let consumer: ChildHandle | undefined;
    const queueName = spec.consumer === 'ours' ? ns.queue('handler') : ns.queue('sink');
    if (spec.consumer === 'ours') {
      consumer = await ChildHandle.start(
        harness,
        'ours-consumer',
        `${tag}-consumer`,
        {
          exchange: ns.exchange,
          schema: ns.schema,
          serviceName: `${ns.serviceName}-c`,
          queue: queueName,
          inbox: spec.inbox ?? true,
          prefetch: options.prefetch,
          ackDelayMs: options.ackDelayMs,
          expected: total,
          ...(spec.rate && spec.warmup > 0 ? { warmFrom: spec.count } : {}),
          ...(spec.rate ? { poolIdleMs: options.poolIdleMs } : {}),
        },
        { profile: true },
      );
      resources.queue(...(consumer.ready.queues as string[]));
    } else if (spec.consumer === 'plain') {
      resources.queue(queueName);
      consumer = await ChildHandle.start(harness, 'plain-consumer', `${tag}-consumer`, {
        exchange: ns.exchange,
        queue: queueName,
        bindingKey: EVENT_NAME,
        prefetch: options.prefetch,
        expected: total,
        ...(spec.handInbox
          ? { inbox: { schema: ns.schema, connections: HAND_INBOX_CONNECTIONS, ...(spec.rate ? { idleMs: options.poolIdleMs } : {}) } }
          : {}),
        ...(spec.rate && spec.warmup > 0 ? { warmFrom: spec.count } : {}),
      });
    } else if (spec.consumer === 'sink') {
      // A queue nobody reads: the relay's messages are routable, and pile up there.
      await declareSink(ns.exchange, resources.queue(queueName));
    }
    if (consumer) children.push(consumer);

    let relay: ChildHandle | undefined;
    if (spec.handRelay) {
      relay = await ChildHandle.start(harness, 'raw-relay', `${tag}-relay`, {
        exchange: ns.exchange,
        schema: ns.schema,
        batchSize: options.batchSize,
        idlePollMs: spec.handRelay.idlePollMs,
      });
      children.push(relay);
      relay.send({ type: 'go' });
    }

    const producer = await ChildHandle.start(
      harness,
      'producer',
      `${tag}-producer`,
      {
        mode: spec.mode,
        schema: ns.schema,
        exchange: ns.exchange,
        serviceName: ns.serviceName,
        count: spec.count,
        warmup: spec.warmup,
        concurrency: spec.concurrency,
        rate: spec.rate,
        poolMax: options.poolMax,
        // Paced: idle connections kept by default, so that the cold start's are not closed in the window.
        ...(spec.rate ? { poolIdleMs: options.poolIdleMs } : {}),
      },
      { profile: ours },
    );
    children.push(producer);
    if (spec.rate) probe = await MachineStalls.start(harness, tag);

    probe?.go();
    producer.send({ type: 'go' });
    let warmupDrainMs: number | undefined;
    if (spec.rate) {
      // Paced: the counted events start once the warm-up's were all handled, so that what a cold
      // pipeline left behind is not counted as the rate's latency; at most WARM_DRAIN_MAX_MS later.
      const warmed = await producer.next('warmed', 600_000);
      if ((spec.consumer === 'ours' || spec.consumer === 'plain') && spec.warmup > 0) {
        const receiver = consumer!;
        // Only the wait's own timeout is let through; a consumer (or hand-written relay) that died fails the run now.
        const warm = await receiver.next('warm', WARM_DRAIN_MAX_MS).catch((error: unknown) => {
          if (receiver.exitError) throw error;
          if (relay?.exitError) throw relay.exitError;
          return undefined;
        });
        warmupDrainMs = warm ? Math.max(0, (warm.t as number) - (warmed.t as number)) : Infinity;
        if (!warm) context.log(`${tag}: the warm-up's events were not all handled within ${WARM_DRAIN_MAX_MS / 1_000} s of its last commit; measuring anyway`);
      }
      producer.send({ type: 'measure' });
    }
    await producer.next('started', 600_000);
    const pids = {
      producer: producer.pid,
      ...(relay ? { relay: relay.pid } : {}),
      ...(consumer && spec.consumer !== 'sink' ? { consumer: consumer.pid } : {}),
    };
    const cpuBefore = context.cpu.sample(pids);
    await producer.next('finished', 1_800_000);
    // Where the events are at the last commit: still in the outbox (the relay is behind) or in the queue
    // (the consumer is behind). One look, after the clock stopped.
    const backlog = spec.consumer === 'ours' || spec.consumer === 'plain' ? await pipelineBacklog(ns.schema, outbox, queueName) : undefined;
    if (consumer && spec.consumer !== 'sink') await consumer.next('done', 300_000);
    const cpuAfter = context.cpu.sample(pids);
    // Anything delivered twice would arrive now.
    if (consumer) await new Promise((resolve) => setTimeout(resolve, 300));

    const produced = await producer.stop();
    const relayed = relay ? await relay.stop() : undefined;
    const consumed = consumer ? await consumer.stop() : undefined;
    const probed = await probe?.stop();

    const t0 = produced.t0 as number;
    const tEnd = produced.tEnd as number;
    const committedAt = produced.committedAt as Float64Array;
    const metrics: Record<string, number> = {
      commitsPerSec: spec.count / ((tEnd - t0) / 1_000),
      'rss.producer': peakRssMb(produced),
    };
    if (relayed) metrics['rss.relay'] = peakRssMb(relayed);
    const checks: Check[] = [check(`${label}: failed transactions`, 0, produced.errors as number)];
    // Transactions that published, then threw (before the warm-up): rolled back, nothing of theirs
    // stored; a consumer that received one counts it as unexpected.
    const rollbacks = produced.rollbacksPlanned as number;
    if (rollbacks > 0) checks.push(check(`${label}: transactions rolled back after publish()`, rollbacks, produced.rolledBack as number));
    checks.push(check(`${label}: order rows`, total, await countRows(`"${ns.schema}".orders`)));
    if (outbox) {
      const status = await outboxStatus(ns.schema);
      const expectedRows = publishes ? total : 0;
      checks.push(check(`${label}: outbox rows`, expectedRows, await countRows(outboxTable(ns.schema))));
      if (spec.consumer !== 'sink' && spec.consumer !== 'none') checks.push(check(`${label}: outbox rows sent`, expectedRows, status.sent ?? 0));
      if (spec.consumer === 'sink') {
        // Nobody reads the queue: what the relay marked sent must be there, and it must have sent some.
        const sent = status.sent ?? 0;
        checks.push(check(`${label}: the relay published`, 'yes', publishes && sent === 0 ? 'no' : 'yes'));
        checks.push(check(`${label}: messages in the unread queue = rows marked sent`, sent, await messagesLeft([queueName])));
      }
    }
    if (spec.consumer === 'ours') {
      // The variant ran with the inbox it names (a handler's inbox option miswired would not show otherwise).
      const inbox = spec.inbox ?? true;
      checks.push(check(`${label}: inbox records`, inbox ? total : 0, await countRows(inboxTable(ns.schema))));
    }
    if (spec.handInbox) checks.push(check(`${label}: inbox records (hand-written)`, total, await countRows(inboxTable(ns.schema))));
    if (consumer && spec.consumer !== 'sink') {
      // Consumers stopped, every message handled was acked: a message still queued (a duplicate the
      // relay sent late, a retry, a dead letter) is one the counts above did not see.
      const queues = spec.consumer === 'ours' ? (consumer.ready.queues as string[]) : [queueName];
      checks.push(check(`${label}: messages left in the queues (handler, retry, dead-letter)`, 0, await messagesLeft(queues)));
    }
    if (consumed) {
      metrics['rss.consumer'] = peakRssMb(consumed);
      checks.push(...countChecks(label, total, consumed.counts as HandledCounts));
      const handledAt = consumed.handledAt as Float64Array;
      const summary = latencySummary(latencies(committedAt, handledAt, 0, spec.count));
      metrics['latency.p50'] = summary.p50;
      metrics['latency.p95'] = summary.p95;
      metrics['latency.p99'] = summary.p99;
      metrics['latency.max'] = summary.max;
      metrics.drainMs = lastOf(handledAt, 0, total) - lastOf(committedAt, 0, total);
      if (probed) {
        // From the counted events' start to the last of them handled.
        Object.assign(metrics, MachineStalls.summarize(probed, t0, lastOf(handledAt, 0, spec.count)));
        writeTimeline(harness, tag, { counted: spec.count, committedAt, handledAt, probe: probed });
      }
      if (spec.rate && spec.warmup > 0) {
        // The paced warm-up (the pipeline's first seconds after boot), kept apart: reported, not the target's figure.
        const warm = latencySummary(latencies(committedAt, handledAt, spec.count, total));
        metrics['warmup.p50'] = warm.p50;
        metrics['warmup.p99'] = warm.p99;
        if (warmupDrainMs !== undefined) {
          // A wait that timed out is counted apart (spread() leaves non-finite values out of the median).
          metrics['warmup.drainMs'] = warmupDrainMs;
          metrics['warmup.timedOut'] = Number.isFinite(warmupDrainMs) ? 0 : 1;
        }
      }
    }
    Object.assign(metrics, CpuMeter.perEvent(cpuBefore, cpuAfter, spec.count, cpus().length));
    if (backlog) {
      metrics['atLastCommit.outboxPending'] = backlog.outboxPending;
      metrics['atLastCommit.queueReady'] = backlog.queueReady;
    }
    if (spec.rate) metrics.achievedRate = spec.count / ((tEnd - t0) / 1_000);
    return { metrics, checks };
  } finally {
    for (const child of children) child.kill();
    probe?.kill();
  }
}
