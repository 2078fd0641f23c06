import { printable, printableId } from '../util/printable';
import { Injectable, Logger } from '@nestjs/common';
import { context as otelContext, SpanKind, trace } from '@opentelemetry/api';
import { MessageHeaders } from '../envelope/message-headers';
import { isValidCorrelationId } from '../envelope/message-headers.factory';
import type { DiscoveredHandler } from '../discovery/discovered-handler';
import { CorrelationContext } from '../correlation/correlation.context';
import { HandlerTimeoutError } from '../errors/handler-timeout.error';
import { NonRetryableError } from '../errors/non-retryable.error';
import { InboxGuard } from '../inbox/inbox.guard';
import { TurnRefusedAtShutdownError } from '../inbox/turn-refused-at-shutdown.error';
import { IntegrationEventsMetrics } from '../telemetry/integration-events.metrics';
import { INSTRUMENTATION_NAME, TelemetryAttributes as A } from '../telemetry/telemetry-attributes';
import { endSpanGuarded, guardTracing, startSpanGuarded } from '../telemetry/guarded-tracing';
import { extractTraceContext } from '../telemetry/trace-context';
import { isInstance } from '../util/is-instance';
import type { CopyDisposition } from '../transport/integration-event-transport';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { readAttempt } from './attempt-header';
import type { Disposition } from './disposition';
import { failureDetails, poisonDetails } from './failure-details';
import type { IncomingMessage } from './incoming-message';
import type { IntegrationEventContext } from './integration-event-context.interface';
import { decodeMessage } from './message-decoder';
import { AbandonedCalls } from './abandoned-calls';

/**
 * Turns one delivery into one handler call, whatever the transport: decode and check the message,
 * build the context, call `handle()` under its timeout, and decide from the handler's retry policy what
 * becomes of the message. Every outcome, a handler's exception included, is a `Disposition`; it throws
 * only `TurnRefusedAtShutdownError` (a call that never started: the transport gives the message back).
 */
@Injectable()
export class MessageDispatcher {
  private readonly logger = new Logger('IntegrationEvents:Consumer');

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly correlation: CorrelationContext,
    private readonly inbox: InboxGuard,
    private readonly metrics: IntegrationEventsMetrics,
  ) {}

  private readonly tracer = trace.getTracer(INSTRUMENTATION_NAME);
  private readonly abandonedCalls = new AbandonedCalls();

  /**
   * One CONSUMER span per delivery, child of the trace the message carries (the relay's publish span),
   * current while the handler runs; then the outcome as metrics.
   */
  async dispatch(handler: DiscoveredHandler, message: IncomingMessage, shutdown: AbortSignal): Promise<Disposition> {
    // The handler's event, never the message's header: a publisher's stray or hostile value must not name
    // spans or become a metric label (a new time series per value). A message whose header disagrees is
    // refused as poison anyway.
    const eventName = handler.event.name;
    const parent = extractTraceContext(message.headers);
    const span = startSpanGuarded(
      this.tracer,
      `process ${eventName}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          [A.MessagingSystem]: this.config.options.inProcess ? 'in_process' : 'rabbitmq',
          [A.MessagingOperationType]: 'process',
          [A.MessagingOperationName]: 'process',
          [A.MessagingDestinationName]: handler.queue,
          [A.MessagingConsumerGroup]: handler.queue,
          [A.MessagingMessageId]: typeof message.messageId === 'string' ? message.messageId : '',
          [A.EventName]: eventName,
          [A.Handler]: handler.name,
        },
      },
      parent,
    );
    const started = performance.now();
    let disposition: Disposition;
    try {
      disposition = await otelContext.with(trace.setSpan(parent, span), () => this.decideFor(handler, message, shutdown));
    } catch (error) {
      guardTracing(() => span.end(), undefined);
      throw error;
    }
    const seconds = (performance.now() - started) / 1000;
    const outcome = disposition.action === 'ack' ? 'ack' : disposition.action === 'retry' ? 'retry' : 'dead_letter';
    if (disposition.action === 'ack') endSpanGuarded(span, { [A.Outcome]: outcome });
    else {
      endSpanGuarded(
        span,
        disposition.action === 'retry' ? { [A.Outcome]: outcome, [A.Attempt]: disposition.attempt } : { [A.Outcome]: outcome, [A.Reason]: disposition.reason },
        `${disposition.failure.name}: ${disposition.failure.message}`,
      );
    }
    const acknowledgedAs = this.acknowledgedAs.get(message);
    this.acknowledgedAs.delete(message);
    this.metrics.recordHandled(eventName, handler.name, acknowledgedAs ?? outcome, seconds);
    return disposition;
  }

  /**
   * A retry copy or a dead letter is in its queue: counted here, not when decided, since a copy that
   * could not be placed sends the message back to its queue to be decided again.
   */
  placed(handler: DiscoveredHandler, disposition: CopyDisposition): void {
    if (disposition.action === 'retry') this.metrics.recordRetried(handler.event.name, handler.name);
    else this.metrics.recordDeadLettered(handler.event.name, handler.name, disposition.reason);
  }

  /**
   * Deliveries acknowledged without a call: `duplicate`, those the inbox found already handled;
   * `other_version`, those of a version another handler of this service takes.
   */
  private readonly acknowledgedAs = new WeakMap<IncomingMessage, 'duplicate' | 'other_version'>();

  private async decideFor(handler: DiscoveredHandler, message: IncomingMessage, shutdown: AbortSignal): Promise<Disposition> {
    const { consumer } = this.config.options;
    const policy = handler.retryPolicy;
    const attempt = readAttempt(message.headers, policy.maxAttempts);

    // The handler's timeout bounds the class's async validation rules and the call together.
    const started = performance.now();
    const decoded = await decodeMessage(handler, message, consumer);
    if (!decoded.ok && decoded.otherVersion) {
      this.acknowledgedAs.set(message, 'other_version');
      this.logger.debug(`Left message ${printableId(message.messageId)} on ${handler.queue} to ${decoded.otherVersion.handlers.join(', ')}: ${printable(decoded.reason)}`);
      return { action: 'ack' };
    }
    if (!decoded.ok && decoded.validationFailed) {
      const { error, ...contract } = decoded.validationFailed;
      this.logger.warn(`Validating message ${contract.messageId} for ${handler.name} failed: ${printable(error.message)}`);
      return this.afterFailure(handler, attempt, error, contract);
    }
    if (!decoded.ok) {
      this.logger.warn(`Poison message ${printableId(message.messageId)} on ${handler.queue}: ${printable(decoded.reason)}`);
      return {
        action: 'dead-letter',
        reason: 'poison',
        attempts: attempt - 1,
        failure: poisonDetails(decoded.reason),
        messageId: typeof message.messageId === 'string' ? message.messageId : undefined,
        eventName: stringHeader(message.headers[MessageHeaders.EventName]) ?? message.routingKey,
        eventVersion: numberHeader(message.headers[MessageHeaders.EventVersion]),
      };
    }

    const attemptState = new AttemptState(shutdown);
    const context: IntegrationEventContext = {
      messageId: decoded.messageId,
      eventName: decoded.eventName,
      eventVersion: decoded.eventVersion,
      occurredAt: decoded.occurredAt,
      sourceService: stringHeader(message.headers[MessageHeaders.SourceService]),
      // What another publisher sent: taken only if this library could send it on (else the flow continues
      // under this message's id, as for a message without one).
      correlationId: idHeader(message.headers[MessageHeaders.CorrelationId]),
      causationId: idHeader(message.headers[MessageHeaders.CausationId]),
      attempt,
      redelivered: message.redelivered,
      // A copy: the retry or dead-letter copy is made from the message's own headers, which a handler that
      // edits what it was given (despite the Readonly type) must not change.
      headers: { ...message.headers },
      queue: handler.queue,
      // Built on first read: most handlers never look.
      get signal() {
        return attemptState.signal;
      },
    };

    try {
      const ran = await this.callWithTimeout(handler, decoded.event, context, attemptState, performance.now() - started);
      if (!ran) {
        this.acknowledgedAs.set(message, 'duplicate');
        this.logger.log(`Skipped duplicate delivery of message ${decoded.messageId} to ${handler.name}: already handled`);
      }
      return { action: 'ack' };
    } catch (error) {
      // Never started (shutdown came first): not an attempt; the transport gives the message back.
      if (isInstance(error, TurnRefusedAtShutdownError)) throw error;
      return this.afterFailure(handler, attempt, error, decoded);
    }
  }

  /** What becomes of a message whose attempt failed: a retry, or its dead-letter queue. */
  private afterFailure(
    handler: DiscoveredHandler,
    attempt: number,
    error: unknown,
    decoded: { readonly messageId: string; readonly eventName: string; readonly eventVersion: number },
  ): Disposition {
    const policy = handler.retryPolicy;
    const failure = failureDetails(error);
    const base = { failure, messageId: decoded.messageId, eventName: decoded.eventName, eventVersion: decoded.eventVersion };
    const predicateThrew = (thrown: unknown): void => {
      const details = failureDetails(thrown);
      this.logger.warn(
        `The retry.retryable() predicate of ${handler.name} threw on message ${decoded.messageId} (${details.name}: ` +
          `${printable(details.message)}); the failure counts as retryable`,
      );
    };
    if (isInstance(error, NonRetryableError) || !isRetryable(policy.retryable, error, predicateThrew)) {
      this.logger.warn(`Handler ${handler.name} refused message ${decoded.messageId} (not retryable): ${printable(`${failure.name}: ${failure.message}`)}`);
      return { action: 'dead-letter', reason: 'non-retryable', attempts: attempt, ...base };
    }
    if (attempt >= policy.maxAttempts) {
      this.logger.warn(`Handler ${handler.name} failed message ${decoded.messageId} on its last attempt (${attempt}): ${printable(`${failure.name}: ${failure.message}`)}`);
      return { action: 'dead-letter', reason: 'max-attempts', attempts: attempt, ...base };
    }
    const nextAttempt = attempt + 1;
    const delayMs = policy.delayBefore(nextAttempt);
    this.logger.warn(
      `Handler ${handler.name} failed message ${decoded.messageId} (attempt ${attempt} of ${policy.maxAttempts}), ` +
        `retrying in ${delayMs} ms: ${printable(`${failure.name}: ${failure.message}`)}`,
    );
    return { action: 'retry', attempt, nextAttempt, delayMs, failure, eventName: decoded.eventName };
  }

  /**
   * Runs the handler in a context of its own (nestjs-cls), carrying the flow's correlation id and this
   * message as the cause, so whatever it publishes continues the flow and `@Transactional()` works in it;
   * with the inbox, inside the inbox transaction. A handler that has not settled after its timeout is
   * abandoned as failed; its signal tells it so (and its inbox transaction rolls back if it ends later).
   * @returns false when the inbox says the message was already handled
   */
  private async callWithTimeout(
    handler: DiscoveredHandler,
    event: object,
    context: IntegrationEventContext,
    attemptState: AttemptState,
    spentMs: number,
  ): Promise<boolean> {
    let started = false;
    const handle = async (): Promise<void> => {
      started = true;
      await handler.instance.handle(event, context);
    };
    // `timeoutMs` bounds the call; with the inbox on SQLite, where inbox transactions take turns, it
    // bounds the wait for the turn and then, afresh, the call (waiting behind other handlers is not this
    // one's time, but a turn that never comes must not hold the message for ever).
    let timer: NodeJS.Timeout | undefined;
    let expire: (error: Error) => void = () => undefined;
    const timedOut = new Promise<never>((_resolve, reject) => (expire = reject));
    const giveUp = (): void => {
      const error = new HandlerTimeoutError(handler.name, handler.timeoutMs);
      attemptState.abandon(error);
      expire(error);
    };
    const startClock = (budgetMs = handler.timeoutMs): void => {
      clearTimeout(timer);
      // Unreferenced: after shutdown (its drain given up), a call that never settles must not keep the
      // process alive until its timeout; while the service runs, its connections do.
      timer = setTimeout(() => {
        // Its COMMIT is on its way (the last check passed): that decides, not the clock. A commit that has
        // not ended after another `timeoutMs` is given up on as before.
        if (attemptState.committing) timer = setTimeout(giveUp, handler.timeoutMs).unref();
        else giveUp();
      }, budgetMs).unref();
    };
    // What validating the message took (async rules) is part of the call's time, also when the clock
    // starts again at its turn (SQLite).
    const budgetMs = Math.max(1, handler.timeoutMs - spentMs);
    startClock(budgetMs);
    const call = this.correlation.run({ correlationId: context.correlationId ?? context.messageId, causationId: context.messageId }, async () => {
      if (!handler.inbox) {
        await handle();
        return true;
      }
      // An earlier attempt of this message, given up on its timeout, still runs and holds its inbox
      // record: this one waits for it here, not on that record's lock with a connection of the pool.
      const earlier = this.abandonedCalls.of(handler.queue, context.messageId);
      if (earlier) {
        // Shutdown does not wait for it: the message goes back to its queue, as a delivery not started.
        if (!(await endsBeforeShutdown(earlier, attemptState.shutdown))) {
          throw new TurnRefusedAtShutdownError(handler.queue, 'an earlier attempt of its message, given up on its timeout, to end');
        }
        if (attemptState.aborted) throw attemptState.reason;
      }
      return this.inbox.runOnce(handler.queue, context.messageId, attemptState, handle, () => startClock(budgetMs));
    });
    try {
      return await Promise.race([call, timedOut]);
    } finally {
      clearTimeout(timer);
      attemptState.end();
      // A handler abandoned on timeout may still reject later: that must not become an unhandled rejection.
      if (attemptState.aborted) this.followAbandoned(handler, context.messageId, call, () => started);
      else call.catch(() => undefined);
    }
  }

  /**
   * A call given up on its timeout that still runs: its retry in this process waits for it with the
   * inbox (see `AbandonedCalls`), and how it ends is logged, as its effects may stand beside its retry's.
   */
  private followAbandoned(handler: DiscoveredHandler, messageId: string, call: Promise<boolean>, handlerStarted: () => boolean): void {
    if (handler.inbox) this.abandonedCalls.add(handler.queue, messageId, call);
    const givenUpAt = performance.now();
    const after = (): string => `Handler ${handler.name}'s call for message ${messageId}, given up after its timeout of ${handler.timeoutMs} ms, ended ${Math.round(performance.now() - givenUpAt)} ms later`;
    call.then(
      (ran) => {
        // Counted as a failed attempt all the same: the message was retried or dead-lettered meanwhile.
        if (!handler.inbox) this.logger.warn(`${after()}: what it did stands, beside the message's retry (or its dead letter)`);
        else if (ran) this.logger.warn(`${after()}, committed: the inbox record is there, so a retry of the message, or a replay of its dead letter, skips the handler`);
        else this.logger.warn(`${after()}, finding the message already handled`);
      },
      (error: unknown) => {
        // One that never reached the handler (it waited for an earlier attempt, or for its turn) did nothing.
        if (!handlerStarted()) return;
        const failure = failureDetails(error);
        if (handler.inbox) this.logger.warn(`${after()}: its transaction rolled back (${printable(`${failure.name}: ${failure.message}`)})`);
        else this.logger.warn(`${after()}, failing: ${printable(`${failure.name}: ${failure.message}`)}`);
      },
    );
  }
}

/**
 * Whether an attempt was abandoned (timed out), and the handler's `signal`, which fires on that or on
 * shutdown. The signal is only made when the handler reads it.
 */
class AttemptState {
  private abandonedWith: Error | undefined;
  private commitBegun = false;
  private controller: AbortController | undefined;
  private ended = false;
  private readonly onShutdown = (): void => this.controller?.abort(this.shutdown.reason);

  /** @param shutdown the consumer's signal, fired at shutdown (see `AbandonState.shutdown`) */
  constructor(readonly shutdown: AbortSignal) {}

  get aborted(): boolean {
    return this.abandonedWith !== undefined;
  }

  get reason(): Error | undefined {
    return this.abandonedWith;
  }

  /** The last check before its inbox transaction's COMMIT passed (see `AbandonState.beginCommit`). */
  get committing(): boolean {
    return this.commitBegun;
  }

  beginCommit(): void {
    if (!this.abandonedWith) this.commitBegun = true;
  }

  /**
   * The attempt's own signal, told of shutdown by a listener removed when the attempt ends (`end()`).
   * Not `AbortSignal.any()`: on Node 20 each such signal stays in the shutdown signal's list of
   * dependants for good (nodejs/node#55351), some 50 bytes for every call that read its signal.
   */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abandonedWith) this.controller.abort(this.abandonedWith);
      else if (this.shutdown.aborted) this.controller.abort(this.shutdown.reason);
      // One listener per running call that reads its signal (as many as calls run at once, which the
      // transports allow for on the shutdown signal), removed when the call ends.
      else if (!this.ended) this.shutdown.addEventListener('abort', this.onShutdown, { once: true });
    }
    return this.controller.signal;
  }

  abandon(reason: Error): void {
    if (this.abandonedWith) return;
    this.abandonedWith = reason;
    this.controller?.abort(reason);
  }

  /**
   * The attempt is over (done, failed or abandoned, whose signal has fired): shutdown no longer concerns
   * its signal, and the shutdown signal lets go of it.
   */
  end(): void {
    this.ended = true;
    if (this.controller) this.shutdown.removeEventListener('abort', this.onShutdown);
  }
}

/** Whether `ended` settles before `shutdown` fires (false at once if it has). */
function endsBeforeShutdown(ended: Promise<void>, shutdown: AbortSignal): Promise<boolean> {
  if (shutdown.aborted) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    const onShutdown = (): void => resolve(false);
    shutdown.addEventListener('abort', onShutdown, { once: true });
    void ended.then(() => {
      shutdown.removeEventListener('abort', onShutdown);
      resolve(true);
    });
  });
}

/** The policy's answer; one that throws counts as "retry" (nothing is lost), and `onThrow` says so. */
function isRetryable(retryable: (error: unknown) => boolean, error: unknown, onThrow: (thrown: unknown) => void): boolean {
  try {
    return retryable(error) !== false;
  } catch (thrown) {
    onThrow(thrown);
    return true;
  }
}

function stringHeader(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function idHeader(value: unknown): string | undefined {
  return isValidCorrelationId(value) ? value : undefined;
}

function numberHeader(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) ? value : undefined;
}


