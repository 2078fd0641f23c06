import type { TestingModule } from '@nestjs/testing';
import { context, propagation, trace, type Context, type TextMapPropagator } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, type ReadableSpan, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { IntegrationEventPublisher } from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { consistently, eventually } from './support/eventually';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/** An application's span processor that throws when a span ends (the SDK does not catch it). */
class ThrowingSpanProcessor implements SpanProcessor {
  ended = 0;
  onStart(): void {}
  onEnd(_span: ReadableSpan): void {
    this.ended++;
    throw new Error('span exporter misconfigured (test)');
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** An application's span processor that throws when a span starts: the SDK's startSpan() then throws. */
class ThrowingOnStartProcessor extends ThrowingSpanProcessor {
  override onStart(): void {
    throw new Error('span enricher broken (test)');
  }
  override onEnd(): void {}
}

/** An application's propagator that throws on every inject and extract. */
const throwingPropagator: TextMapPropagator = {
  inject: () => {
    throw new Error('propagator broken (test)');
  },
  extract: (): Context => {
    throw new Error('propagator broken (test)');
  },
  fields: () => ['traceparent'],
};

/**
 * Tracing is taken around the work it describes: an application's tracer, span processor or propagator
 * that throws loses its spans, never the work (a handled message given back to be handled again, a
 * confirmed row left unmarked and sent again).
 */
describe('tracing that throws', () => {
  let ns: TestNamespace;
  let app: TestingModule | undefined;
  const processor = new ThrowingSpanProcessor();

  beforeAll(() => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [processor] }));
  });

  afterAll(() => {
    trace.disable();
    propagation.disable();
    context.disable();
  });

  beforeEach(async () => {
    ns = await TestNamespace.create();
  });

  afterEach(async () => {
    await app?.close();
    app = undefined;
    propagation.disable();
    await ns.cleanup();
  });

  it('handles, acknowledges and marks sent once though every span end throws', async () => {
    const probe = await ns.probe('ordering.order-created');
    // Without the inbox, a delivery given back would be handled again, and show.
    app = await startTestApp(ns, { providers: [OrderCreatedRecorder], options: { inbox: { enabled: false } } });
    const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('traced-badly'), { standalone: true });
    await eventually(async () => expect((await ns.outboxRows()).map((row) => [row.id, row.status])).toEqual([[id, 'sent']]));
    await eventually(() => expect(app!.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toEqual([id]));
    // Neither handled again (its ack lost) nor sent again (its mark lost), past a redelivery's second.
    await consistently(
      () => {
        expect(app!.get(OrderCreatedRecorder).received).toHaveLength(1);
        expect(probe.messages.map((m) => m.properties.messageId)).toEqual([id]);
      },
      { forMs: 1_500 },
    );
    expect(processor.ended).toBeGreaterThanOrEqual(2);
  });

  it('counts the attempts of a failing handler and dead-letters it, though every span end throws', async () => {
    app = await startTestApp(ns, {
      providers: [OrderCreatedRecorder],
      options: { consumer: { retry: { maxAttempts: 2, initialDelayMs: 50, maxDelayMs: 100 } } },
    });
    app.get(OrderCreatedRecorder).behaviour = () => {
      throw new Error('always fails');
    };
    await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('fails-traced-badly'), { standalone: true });
    const dlq = `${ns.serviceName}.OrderCreatedRecorder.dlq`;
    await eventually(async () => expect(await ns.queueDepth(dlq)).toBe(1), { timeoutMs: 5_000 });
    expect(app.get(OrderCreatedRecorder).received.map((r) => r.context.attempt)).toEqual([1, 2]);
  });

  it('keeps the trace a message carries when its spans cannot start: the next message carries it on', async () => {
    trace.disable();
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new ThrowingOnStartProcessor()] }));
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    try {
      app = await startTestApp(ns, { providers: [OrderCreatedRecorder], options: { inbox: { enabled: false } } });
      // Another service's trace, as its publish() would have stored it with the row.
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      const [id] = await app
        .get(IntegrationEventPublisher)
        .publish(new OrderCreatedIntegrationEvent('trace-kept'), { standalone: true, headers: { traceparent } });
      await eventually(() => expect(app!.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toEqual([id]));
      // The relay's span did not start; the message still carries the trace it was given.
      expect(String(app.get(OrderCreatedRecorder).received[0]!.context.headers.traceparent)).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-/);
    } finally {
      trace.disable();
      trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [processor] }));
    }
  });

  it('publishes and delivers once when the propagator throws, writing no trace headers', async () => {
    propagation.setGlobalPropagator(throwingPropagator);
    app = await startTestApp(ns, { providers: [OrderCreatedRecorder] });
    const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('no-trace'), { standalone: true });
    await eventually(() => expect(app!.get(OrderCreatedRecorder).received.map((r) => r.context.messageId)).toEqual([id]));
    expect(app.get(OrderCreatedRecorder).received[0]!.context.headers.traceparent).toBeUndefined();
    await eventually(async () => expect((await ns.outboxRows()).map((row) => row.status)).toEqual(['sent']));
    await consistently(() => expect(app!.get(OrderCreatedRecorder).received).toHaveLength(1), { forMs: 1_200 });
  });
});
