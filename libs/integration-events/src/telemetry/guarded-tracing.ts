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
    const now = performance.now();
    if (lastWarningAt === undefined || now - lastWarningAt >= WARNING_INTERVAL_MS) {
      lastWarningAt = now;
      logger.warn(`Tracing failed, a span or trace header is lost: ${String((error as Error)?.message ?? error)}`);
    }
    return fallback;
  }
}

/** A span that records nothing (its methods do nothing): one for every span a tracer failed to start. */
const NON_RECORDING_SPAN = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** `tracer.startSpan()`, or a span that records nothing when the tracer throws. */
export function startSpanGuarded(tracer: Tracer, name: string, options: SpanOptions, parent: Context): Span {
  return guardTracing(() => tracer.startSpan(name, options, parent), NON_RECORDING_SPAN);
}

/** Sets the span's outcome (an error status when `error` is given) and ends it; never throws. */
export function endSpanGuarded(span: Span, attributes: Attributes, error?: string): void {
  guardTracing(() => {
    span.setAttributes(attributes);
    if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
  }, undefined);
  guardTracing(() => span.end(), undefined);
}
