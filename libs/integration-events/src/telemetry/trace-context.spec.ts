import { context, propagation, ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { extractTraceContext, withTraceContext } from './trace-context';

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('trace context in message headers', () => {
  beforeAll(() => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
  });

  afterAll(() => {
    propagation.disable();
    context.disable();
  });

  it('reads every field of the registered propagator, text or bytes', () => {
    const extracted = extractTraceContext({ traceparent: Buffer.from(TRACEPARENT), baggage: 'tenant=acme', 'ie-event-name': 'x' });
    expect(trace.getSpanContext(extracted)?.traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(propagation.getBaggage(extracted)?.getEntry('tenant')?.value).toBe('acme');
  });

  it('gives a message without trace headers no parent, whatever span is active where it is read', () => {
    const active = trace.setSpanContext(ROOT_CONTEXT, { traceId: 'f'.repeat(32), spanId: 'e'.repeat(16), traceFlags: TraceFlags.SAMPLED });
    const extracted = context.with(active, () => extractTraceContext({ 'ie-event-name': 'x' }));
    expect(trace.getSpanContext(extracted)).toBeUndefined();
  });

  it('writes the new context over every field of the old one: baggage the new context lacks is gone', () => {
    const next = trace.setSpanContext(ROOT_CONTEXT, { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: TraceFlags.SAMPLED });
    const headers = withTraceContext({ traceparent: TRACEPARENT, tracestate: 'old=1', baggage: 'tenant=acme', 'ie-event-name': 'x' }, next);
    expect(headers).toEqual({ traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`, 'ie-event-name': 'x' });
  });
});
