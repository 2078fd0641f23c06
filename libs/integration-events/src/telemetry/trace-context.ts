import { context, propagation, type Context } from '@opentelemetry/api';

/** W3C Trace Context header names; they travel in the message headers as they would over HTTP. */
export const TRACE_HEADERS = ['traceparent', 'tracestate'] as const;

/**
 * The active trace context as W3C headers (`traceparent`, `tracestate`), to store with an outbox row at
 * `publish()`. Empty when no OpenTelemetry SDK is registered or no span is active: the API is a no-op.
 */
export function activeTraceHeaders(): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier;
}

/** The trace context carried by message headers (the parent of the next span). */
export function extractTraceContext(headers: Readonly<Record<string, unknown>>): Context {
  const carrier: Record<string, string> = {};
  for (const name of TRACE_HEADERS) {
    const value = headers[name];
    if (typeof value === 'string') carrier[name] = value;
    else if (Buffer.isBuffer(value)) carrier[name] = value.toString('utf8');
  }
  return propagation.extract(context.active(), carrier);
}

/** `headers` with the trace context of `ctx` written over any previous one. */
export function withTraceContext(headers: Readonly<Record<string, unknown>>, ctx: Context): Record<string, unknown> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  const result: Record<string, unknown> = { ...headers };
  for (const name of TRACE_HEADERS) delete result[name];
  return { ...result, ...carrier };
}
