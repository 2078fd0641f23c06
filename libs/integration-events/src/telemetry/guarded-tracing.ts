import { Logger } from '@nestjs/common';
import {
  type Attributes,
  type Context,
  INVALID_SPAN_CONTEXT,
  type Span,
  type SpanOptions,
  SpanStatusCode,
  trace,
  type Tracer,
} from '@opentelemetry/api';

const logger = new Logger('IntegrationEvents:Tracing');
const WARNING_INTERVAL_MS = 60_000;
let lastWarningAt: number | undefined;

/**
 * Runs a call into the application's tracing (its tracer provider, span processors, propagator); never
 * throws. Spans and trace headers are taken around work they describe: a span processor whose `onEnd`
 * throws must not fail that work, which would then be done again (a handled message given back to its
 * queue, a confirmed batch left unmarked and sent again), for ever. Warned about at most once a minute.
 */
export function guardTracing<T>(call: () => T, fallback: T): T {
  try {
    return call();
  } catch (error) {
    warnOnce(error);
    return fallback;
  }
}

/** Says tracing failed, at most once a minute. */
function warnOnce(error: unknown): void {
  const now = performance.now();
  if (lastWarningAt !== undefined && now - lastWarningAt < WARNING_INTERVAL_MS) return;
  lastWarningAt = now;
  let reason: string;
  try {
    reason = String((error as Error)?.message ?? error);
  } catch {
    reason = 'an unprintable error';
  }
  logger.warn(`Tracing failed, a span or trace header is lost: ${reason}`);
}

/**
 * `tracer.startSpan()`; when the tracer throws, a span that records nothing but carries the parent's
 * context, so that the trace still reaches the handler's own spans and the message's headers.
 */
export function startSpanGuarded(tracer: Tracer, name: string, options: SpanOptions, parent: Context): Span {
  try {
    return tracer.startSpan(name, options, parent);
  } catch (error) {
    return guardTracing(() => {
      warnOnce(error);
      return trace.wrapSpanContext(trace.getSpanContext(parent) ?? INVALID_SPAN_CONTEXT);
    }, trace.wrapSpanContext(INVALID_SPAN_CONTEXT));
  }
}

/** Sets the span's outcome (an error status when `error` is given) and ends it; never throws. */
export function endSpanGuarded(span: Span, attributes: Attributes, error?: string): void {
  guardTracing(() => {
    span.setAttributes(attributes);
    if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
  }, undefined);
  guardTracing(() => span.end(), undefined);
}
