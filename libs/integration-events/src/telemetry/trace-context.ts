import { context, propagation, ROOT_CONTEXT, type Context, type TextMapGetter } from '@opentelemetry/api';
import { guardTracing } from './guarded-tracing';

/**
 * Reads message headers for the registered propagator: strings as they are, and byte strings (how AMQP
 * hands back some header values) as UTF-8.
 */
const headerGetter: TextMapGetter<Readonly<Record<string, unknown>>> = {
  keys: (headers) => Object.keys(headers),
  get: (headers, key) => {
    const value = headers[key];
    if (typeof value === 'string') return value;
    if (Buffer.isBuffer(value)) return value.toString('utf8');
    return undefined;
  },
};

/**
 * The active context as the registered propagator writes it (W3C `traceparent`/`tracestate`, and
 * `baggage`, B3 or others if the application registered them), to store with an outbox row at
 * `publish()`. Empty when no OpenTelemetry SDK is registered or no span is active: the API is a no-op.
 */
export function activeTraceHeaders(): Record<string, string> {
  const carrier: Record<string, string> = {};
  // A propagator that throws loses the trace, not the publish() (nor the caller's transaction).
  return guardTracing(() => {
    propagation.inject(context.active(), carrier);
    return carrier;
  }, {});
}

/**
 * The context carried by message headers (the parent of the next span), read by the registered
 * propagator from the headers alone: a message without any starts a trace of its own, whatever context
 * happens to be active where it is read.
 */
export function extractTraceContext(headers: Readonly<Record<string, unknown>>): Context {
  return guardTracing(() => propagation.extract(ROOT_CONTEXT, headers, headerGetter), ROOT_CONTEXT);
}

/** `headers` with the context of `ctx` written over any previous one (every field the propagator uses). */
export function withTraceContext(headers: Readonly<Record<string, unknown>>, ctx: Context): Record<string, unknown> {
  return guardTracing(() => {
    const carrier: Record<string, string> = {};
    propagation.inject(ctx, carrier);
    const result: Record<string, unknown> = { ...headers };
    for (const name of propagation.fields()) delete result[name];
    return { ...result, ...carrier };
  }, headers);
}
