import { Controller, type INestApplication, Logger, Post } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TerminusModule } from '@nestjs/terminus';
import { context, metrics, propagation, trace, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { TransactionHost } from '@nestjs-cls/transactional';
import {
  IntegrationEvent,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  NonRetryableError,
  IntegrationEventsHealth,
  IntegrationEventsModule,
  TransportNotReadyError,
  type IIntegrationEventHandler,
} from 'nestjs-integration-events';
import { TransportHost } from '../libs/integration-events/src/transport/transport-host';
import { IntegrationEventsHealthIndicator } from 'nestjs-integration-events/terminus';
import { OrderCreatedIntegrationEvent } from './fixtures/order-events';
import { Client } from 'pg';
import { eventually } from './support/eventually';
import { TEST_DATABASE_URL } from './support/services';
import { infrastructureImports, testOptions, trackHandlerQueues } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

const spanExporter = new InMemorySpanExporter();
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const metricReader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 60_000 });

@Controller('orders')
class OrdersController {
  constructor(
    private readonly txHost: TransactionHost,
    private readonly publisher: IntegrationEventPublisher,
  ) {}

  @Post()
  async create(): Promise<{ traceId: string | undefined }> {
    // Stands for the HTTP instrumentation of a real application: a SERVER span around the request.
    const tracer = trace.getTracer('test-http');
    return tracer.startActiveSpan('POST /orders', { kind: SpanKind.SERVER }, async (span) => {
      // Baggage the request carries (a tenant, say), set as an HTTP instrumentation would from its header.
      const withBaggage = propagation.setBaggage(context.active(), propagation.createBaggage({ tenant: { value: 'acme' } }));
      await context.with(withBaggage, () => this.txHost.withTransaction(() => this.publisher.publish(new OrderCreatedIntegrationEvent('traced'))));
      span.end();
      return { traceId: span.spanContext().traceId };
    });
  }
}

@IntegrationEvent({ name: 'observability.refused', version: 1 })
class RefusedIntegrationEvent {
  constructor(readonly n: number) {}
}

/** Refuses every event it gets: each one goes to its dead-letter queue at once. */
@IntegrationEventHandler(RefusedIntegrationEvent, { inbox: false })
class RefusingHandler implements IIntegrationEventHandler<RefusedIntegrationEvent> {
  calls = 0;
  handle(): void {
    this.calls++;
    throw new NonRetryableError('refused');
  }
}

@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class TracedHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  readonly traceIds: string[] = [];
  readonly tenants: Array<string | undefined> = [];
  handle(): void {
    this.traceIds.push(trace.getActiveSpan()?.spanContext().traceId ?? 'none');
    this.tenants.push(propagation.getActiveBaggage()?.getEntry('tenant')?.value);
    trace.getTracer('test-handler').startSpan('work inside the handler').end();
  }
}

/** Tracing (one trace from the request to the handler), metrics, health. */
describe('observability', () => {
  let ns: TestNamespace;
  let app: INestApplication;

  beforeAll(async () => {
    const contextManager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(contextManager);
    // The W3C trace context and baggage: every field of the registered propagator travels, not only traceparent.
    propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] }));
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [metricReader] }));

    ns = await TestNamespace.create();
    const moduleRef = await Test.createTestingModule({
      imports: [...infrastructureImports(ns), TerminusModule, IntegrationEventsModule.forRoot(testOptions(ns))],
      controllers: [OrdersController],
      providers: [TracedHandler, RefusingHandler, IntegrationEventsHealthIndicator],
    }).compile();
    moduleRef.useLogger(['error']);
    app = moduleRef.createNestApplication();
    await app.listen(0, '127.0.0.1');
    trackHandlerQueues(ns, app);
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
    trace.disable();
    metrics.disable();
    propagation.disable();
    context.disable();
  });

  it('runs one trace from the HTTP request through the commit and the relay to the handler', async () => {
    const response = await fetch(`${await app.getUrl()}/orders`, { method: 'POST' });
    const { traceId } = (await response.json()) as { traceId: string };
    await eventually(() => expect(app.get(TracedHandler).traceIds).toContain(traceId));
    // The request's baggage reached the handler in the other service, through the outbox row and the relay.
    expect(app.get(TracedHandler).tenants[app.get(TracedHandler).traceIds.indexOf(traceId)]).toBe('acme');
    // The CONSUMER span ends once the handler has returned and the message is settled.
    const spans = await eventually(() => {
      const finished = spanExporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
      expect(finished.map((span) => span.name)).toContain('process ordering.order-created');
      return finished;
    });
    const byName = (name: string) => spans.find((span) => span.name === name)!;
    const request = byName('POST /orders');
    const publish = byName('publish ordering.order-created');
    const process = byName('process ordering.order-created');
    const work = byName('work inside the handler');
    expect(publish.kind).toBe(SpanKind.PRODUCER);
    expect(process.kind).toBe(SpanKind.CONSUMER);
    expect(publish.parentSpanContext?.spanId).toBe(request.spanContext().spanId);
    expect(process.parentSpanContext?.spanId).toBe(publish.spanContext().spanId);
    expect(work.parentSpanContext?.spanId).toBe(process.spanContext().spanId);
    expect(publish.attributes).toMatchObject({
      'messaging.system': 'rabbitmq',
      'messaging.operation.type': 'send',
      'messaging.destination.name': ns.exchange,
      'messaging.rabbitmq.destination.routing_key': 'ordering.order-created',
      'integration_events.outcome': 'confirmed',
    });
    expect(process.attributes).toMatchObject({
      'messaging.operation.type': 'process',
      'messaging.destination.name': `${ns.serviceName}.TracedHandler`,
      'integration_events.handler': 'TracedHandler',
      'integration_events.outcome': 'ack',
    });
    expect(process.attributes['messaging.message.id']).toBe(publish.attributes['messaging.message.id']);
  });

  it('counts published and handled messages, handler durations, and reports the outbox backlog and lag', async () => {
    // Its own message, not the trace test's: it must hold when run alone.
    const handledBefore = app.get(TracedHandler).traceIds.length;
    await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('counted'), { standalone: true });
    await eventually(() => expect(app.get(TracedHandler).traceIds.length).toBeGreaterThan(handledBefore));
    // The row is marked sent after the broker's confirm, which may come after the handler ran: collect
    // until the backlog has caught up.
    let exported: ReturnType<typeof metricExporter.getMetrics>[number]['scopeMetrics'][number]['metrics'] = [];
    const metric = (name: string) => exported.filter((m) => m.descriptor.name === name).at(-1);
    await eventually(async () => {
      await metricReader.collect();
      await metricReader.forceFlush();
      exported = metricExporter.getMetrics().flatMap((resource) => resource.scopeMetrics.flatMap((scope) => scope.metrics));
      expect(metric('integration_events.outbox.backlog')?.dataPoints[0]?.value).toBe(0);
    });
    const published = metric('integration_events.published')!;
    expect(published.dataPoints.find((p) => p.attributes['integration_events.outcome'] === 'confirmed')?.value).toBeGreaterThanOrEqual(1);
    const handled = metric('integration_events.handled')!;
    expect(handled.dataPoints.find((p) => p.attributes['integration_events.handler'] === 'TracedHandler')?.value).toBeGreaterThanOrEqual(1);
    // A duration for the handler's calls, labelled with the handler, its event and the outcome.
    const durations = metric('integration_events.handler.duration')!.dataPoints.filter(
      (p) =>
        p.attributes['integration_events.handler'] === 'TracedHandler' &&
        p.attributes['integration_events.event.name'] === 'ordering.order-created' &&
        p.attributes['integration_events.outcome'] === 'ack',
    );
    expect(durations).toHaveLength(1);
    expect((durations[0]!.value as { count: number }).count).toBeGreaterThanOrEqual(1);
    const backlog = metric('integration_events.outbox.backlog')!;
    expect(backlog.dataPoints[0]?.value).toBe(0);
    expect(metric('integration_events.outbox.lag')!.dataPoints[0]?.value).toBe(0);
  });

  it('counts a dead letter once it is in its queue: a copy that could not be placed is not counted', async () => {
    const dlq = `${ns.serviceName}.RefusingHandler.dlq`;
    const channel = await (await ns.amqp()).createChannel();
    await channel.deleteQueue(dlq);
    await channel.close();
    await app.get(IntegrationEventPublisher).publish(new RefusedIntegrationEvent(1), { standalone: true });
    // The first copy comes back (no queue), the message is handled again and its second copy placed.
    await eventually(async () => expect(await ns.queueDepth(dlq)).toBe(1), { timeoutMs: 15_000 });
    expect(app.get(RefusingHandler).calls).toBe(2);

    // Counted once the copy's confirm is in, which may come after the queue shows the copy.
    await eventually(async () => {
      await metricReader.collect();
      await metricReader.forceFlush();
      const exported = metricExporter.getMetrics().flatMap((resource) => resource.scopeMetrics.flatMap((scope) => scope.metrics));
      const points = (name: string) =>
        (exported.filter((m) => m.descriptor.name === name).at(-1)?.dataPoints ?? []).filter((p) => p.attributes['integration_events.handler'] === 'RefusingHandler');
      expect(points('integration_events.dead_lettered').map((p) => [p.attributes['integration_events.event.name'], p.value])).toEqual([
        ['observability.refused', 1],
      ]);
      // Both handler calls happened, and each ended in a decision to dead-letter.
      expect(points('integration_events.handled').map((p) => [p.attributes['integration_events.outcome'], p.value])).toEqual([['dead_letter', 2]]);
    });
    await ns.drainQueue(dlq);
  });

  it('labels spans and metrics with the handler\'s event, never with a message\'s own event-name header', async () => {
    const stray = `stray-${ns.serviceName}`;
    const dlq = `${ns.serviceName}.TracedHandler.dlq`;
    // Another publisher's message on the handler's routing key, naming some other event: poison.
    await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'stray', placedAt: '2026-11-27T06:00:00.000Z' }), {
      headers: { 'ie-event-name': stray },
    });
    await eventually(async () => expect(await ns.queueDepth(dlq)).toBe(1));
    // Counted once the copy's confirm is in, which may come after the queue shows the copy.
    const exported = await eventually(async () => {
      await metricReader.collect();
      await metricReader.forceFlush();
      const collected = metricExporter.getMetrics().flatMap((resource) => resource.scopeMetrics.flatMap((scope) => scope.metrics));
      const deadLettered = (collected.filter((m) => m.descriptor.name === 'integration_events.dead_lettered').at(-1)?.dataPoints ?? []).filter(
        (p) => p.attributes['integration_events.handler'] === 'TracedHandler',
      );
      expect(deadLettered.map((p) => [p.attributes['integration_events.event.name'], p.attributes['integration_events.reason'], p.value])).toEqual([
        ['ordering.order-created', 'poison', 1],
      ]);
      return collected;
    });
    const labels = exported.flatMap((m) => m.dataPoints.map((p) => p.attributes['integration_events.event.name']));
    expect(labels).not.toContain(stray);
    expect(spanExporter.getFinishedSpans().map((span) => span.name)).not.toContain(`process ${stray}`);
    await ns.drainQueue(dlq);
  });

  it('ends the publish spans of rows the transport could not take with an error status, not as sent, and counts them unsent', async () => {
    const unsentCount = async (): Promise<number> => {
      await metricReader.collect();
      await metricReader.forceFlush();
      const published = metricExporter
        .getMetrics()
        .flatMap((resource) => resource.scopeMetrics.flatMap((scope) => scope.metrics))
        .filter((m) => m.descriptor.name === 'integration_events.published')
        .at(-1);
      const point = published?.dataPoints.find(
        (p) => p.attributes['integration_events.outcome'] === 'unsent' && p.attributes['integration_events.event.name'] === 'ordering.order-created',
      );
      return (point?.value as number | undefined) ?? 0;
    };
    const unsentBefore = await unsentCount();
    const transport = app.get(TransportHost).transport;
    const publish = transport.publish.bind(transport);
    jest.spyOn(transport, 'publish').mockImplementationOnce(async () => {
      throw new TransportNotReadyError();
    });
    try {
      const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('o-span-unsent'), { standalone: true });
      // Handed back, and sent on a later round.
      await eventually(async () => expect((await ns.outboxRows()).find((row) => row.id === id)?.status).toBe('sent'));
      const spans = spanExporter.getFinishedSpans().filter((span) => span.kind === SpanKind.PRODUCER && span.attributes['messaging.message.id'] === id);
      expect(spans.map((span) => [span.status.code, span.attributes['integration_events.outcome']])).toEqual([
        [SpanStatusCode.ERROR, 'unsent'],
        [SpanStatusCode.UNSET, 'confirmed'],
      ]);
      expect((await unsentCount()) - unsentBefore).toBe(1);
    } finally {
      jest.mocked(transport.publish).mockImplementation(publish);
    }
  });

  it('answers health checks and metric scrapes in bounded time while the outbox cannot be read', async () => {
    // A published count for the scrape to show (whatever ran before), then the backlog drained.
    await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('scraped'), { standalone: true });
    await eventually(async () => expect((await app.get(IntegrationEventsHealth).check()).outbox.backlog).toBe(0));
    // Another session holds the outbox table locked: every read of it waits.
    const locker = new Client({ connectionString: TEST_DATABASE_URL });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE ${ns.outboxTable} IN ACCESS EXCLUSIVE MODE`);
      const started = performance.now();
      const reports = await Promise.all([1, 2, 3].map(() => app.get(IntegrationEventsHealth).check({ timeoutMs: 300 })));
      expect(performance.now() - started).toBeLessThan(2_500);
      for (const report of reports) {
        expect(report.healthy).toBe(false);
        expect(report.problems).toContain('the outbox cannot be read: no answer within 300 ms (the database is slow, or away)');
      }
      // Three checks at once, one read of each kind: waiting sessions on the table, besides the relay's.
      const { rows } = await (await ns.sql()).query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%count(*)%' AND query LIKE $1 AND query NOT LIKE '%pg_stat_activity%'",
        [`%${ns.schema}%`],
      );
      // Two, and a third should a periodic metric export have come meanwhile; six without the sharing.
      expect(rows[0].n).toBeLessThanOrEqual(3);
      // A scrape goes on without observing the outbox gauges (after their 3 s), the other instruments in it.
      const warn = jest.spyOn(Logger.prototype, 'warn');
      try {
        const scrape = performance.now();
        const collected = await metricReader.collect();
        expect(performance.now() - scrape).toBeLessThan(6_000);
        const names = collected.resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics.map((m) => m.descriptor.name));
        expect(names).toContain('integration_events.published');
        expect(warn.mock.calls.map(([message]) => String(message))).toContainEqual(
          "Metrics: the outbox gauges have no value this time: the outbox's backlog was not read within 3000 ms",
        );
      } finally {
        warn.mockRestore();
      }
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
    }
    await eventually(async () => expect((await app.get(IntegrationEventsHealth).check()).problems).toEqual([]));
  });

  it('reports health, and a lagging outbox as down', async () => {
    // Once the rows other tests published are marked sent (their confirm may come after their handler ran).
    await eventually(async () =>
      expect(await app.get(IntegrationEventsHealth).check()).toMatchObject({
        healthy: true,
        broker: { connected: true },
        relay: { enabled: true, running: true },
        consumers: { handlers: 2, attached: 2 },
        outbox: { backlog: 0 },
      }),
    );
    const indicator = await app.get(IntegrationEventsHealthIndicator).isHealthy('events');
    expect(indicator).toMatchObject({ events: { status: 'up' } });

    // The lag is measured on the database's clock: a service clock an hour ahead does not show as an
    // hour of lag on a row due just now (that the relay cannot send: another relay's lease holds it).
    const db = await ns.sql();
    const { rows: [fresh] } = await db.query(
      `INSERT INTO ${ns.outboxTable} (id, event_name, event_version, payload, headers, occurred_at, available_at, locked_until)
       VALUES (gen_random_uuid(), 'stuck.event', 1, '{}', '{}', now(), now(), now() + interval '1 hour') RETURNING id`,
    );
    const skewed = jest.spyOn(Date, 'now').mockReturnValue(Date.now() + 3_600_000);
    try {
      const skewedReport = await app.get(IntegrationEventsHealth).check({ maxLagMs: 30_000 });
      expect(skewedReport.outbox.backlog).toBe(1);
      expect(skewedReport.outbox.lagMs).toBeLessThan(30_000);
    } finally {
      skewed.mockRestore();
    }
    await db.query(`DELETE FROM ${ns.outboxTable} WHERE id = $1`, [(fresh as { id: string }).id]);

    // A row due for a minute that the relay cannot send (it waits under another relay's lease).
    const { rows: [stuck] } = await db.query(
      `INSERT INTO ${ns.outboxTable} (id, event_name, event_version, payload, headers, occurred_at, available_at, locked_until)
       VALUES (gen_random_uuid(), 'stuck.event', 1, '{}', '{}', now(), now() - interval '1 minute', now() + interval '1 hour') RETURNING id`,
    );
    try {
      const report = await app.get(IntegrationEventsHealth).check({ maxLagMs: 30_000 });
      expect(report.healthy).toBe(false);
      expect(report.problems.join()).toMatch(/oldest due outbox row waits for 6\d s/);
      expect(await app.get(IntegrationEventsHealthIndicator).isHealthy('events', { maxLagMs: 30_000 })).toMatchObject({ events: { status: 'down' } });
      // A lag limit that would mean "always down" (null taken as 0) or "never checked" (NaN, Infinity) is refused.
      for (const maxLagMs of [null, Number.NaN, 0, -1, Number.POSITIVE_INFINITY]) {
        await expect(app.get(IntegrationEventsHealth).check({ maxLagMs: maxLagMs as number })).rejects.toThrow(
          `The health check's maxLagMs takes a positive, finite number of milliseconds, not ${String(maxLagMs)}`,
        );
      }
      // So is a misspelt key, which would check against the default 60 s (and find this row fine).
      await expect(app.get(IntegrationEventsHealth).check({ maxLag: 30_000 } as never)).rejects.toThrow(
        new TypeError('The health check takes { maxLagMs, timeoutMs }, not "maxLag"'),
      );
      await expect(app.get(IntegrationEventsHealthIndicator).isHealthy('events', { maxLag: 30_000 } as never)).rejects.toThrow(TypeError);
      await expect(app.get(IntegrationEventsHealth).check(null as never)).rejects.toThrow('The health check takes { maxLagMs, timeoutMs } or nothing, not null');
    } finally {
      // Gone after this test: the other tests' backlog figures must not see it.
      await db.query(`DELETE FROM ${ns.outboxTable} WHERE id = $1`, [(stuck as { id: string }).id]);
    }
  });
});
