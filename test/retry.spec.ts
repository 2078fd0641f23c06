import type { TestingModule } from '@nestjs/testing';
import {
  IntegrationEventConsumers,
  HandlerTimeoutError,
  IntegrationEvent,
  IntegrationEventHandler,
  IntegrationEventPublisher,
  NonRetryableError,
  type DeadLetter,
  type IIntegrationEventHandler,
  type IntegrationEventContext,
} from 'nestjs-integration-events';
import { Validate, ValidatorConstraint, type ValidatorConstraintInterface } from 'class-validator';
import { RabbitMqPublishingConnection } from '../libs/integration-events/src/transport/rabbitmq/rabbitmq.connection';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { CapturingLogger } from './support/capturing-logger';
import { consistently, eventually } from './support/eventually';
import { untilAborted } from './support/until-aborted';
import { registerTestMeterProvider, type TestMeters } from './support/test-meters';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/** A second handler of the same event that always succeeds: it must never run again for a retry. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent)
class AuditTrail implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  readonly ids: string[] = [];
  handle(_event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): void {
    this.ids.push(context.messageId);
  }
}

/** Its own policy: 3 attempts, and a TypeError is not worth retrying. It touches no database: no inbox. */
@IntegrationEventHandler(OrderCreatedIntegrationEvent, {
  retry: { maxAttempts: 3, retryable: (error) => !(error instanceof TypeError) },
  timeoutMs: 300,
  inbox: false,
})
class PickyHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
  readonly calls: IntegrationEventContext[] = [];
  behaviour: (context: IntegrationEventContext) => Promise<void> | void = () => undefined;
  async handle(_event: OrderCreatedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.calls.push(context);
    await this.behaviour(context);
  }
}

@IntegrationEvent({ name: 'retry.one-at-a-time', version: 1 })
class OneAtATimeIntegrationEvent {
  constructor(readonly orderId: string) {}
}

/** One call at a time, one attempt, 300 ms: every message it gets is dead-lettered at once. */
@IntegrationEventHandler(OneAtATimeIntegrationEvent, { concurrency: 1, timeoutMs: 300, retry: { maxAttempts: 1 }, inbox: false })
class OneAtATime implements IIntegrationEventHandler<OneAtATimeIntegrationEvent> {
  readonly calls: string[] = [];
  handle(event: OneAtATimeIntegrationEvent): void {
    this.calls.push(event.orderId);
    throw new Error('refused');
  }
}

@IntegrationEvent({ name: 'retry.copy-returned', version: 1 })
class CopyReturnedIntegrationEvent {
  constructor(readonly orderId: string) {}
}

/** Its calls for 'slow' wait for `gate`; the others fail their first attempt. */
@IntegrationEventHandler(CopyReturnedIntegrationEvent, { inbox: false })
class CopyReturned implements IIntegrationEventHandler<CopyReturnedIntegrationEvent> {
  readonly calls: Array<{ orderId: string; attempt: number; redelivered: boolean }> = [];
  gate: Promise<void> = Promise.resolve();
  async handle(event: CopyReturnedIntegrationEvent, context: IntegrationEventContext): Promise<void> {
    this.calls.push({ orderId: event.orderId, attempt: context.attempt, redelivered: context.redelivered });
    if (event.orderId === 'slow') await this.gate;
    else if (context.attempt === 1) throw new Error('transient');
  }
}

/** The rule's lookup service: down for the first `failures` checks. */
const ruleService = { failures: 0, checks: 0 };

@ValidatorConstraint({ name: 'knownCustomer', async: true })
class KnownCustomer implements ValidatorConstraintInterface {
  async validate(): Promise<boolean> {
    ruleService.checks++;
    if (ruleService.failures > 0) {
      ruleService.failures--;
      throw new Error('customer directory unavailable');
    }
    return true;
  }
}

@IntegrationEvent({ name: 'retry.customer-checked', version: 1 })
class CustomerCheckedIntegrationEvent {
  @Validate(KnownCustomer)
  readonly customerId!: string;
}

@IntegrationEventHandler(CustomerCheckedIntegrationEvent, { inbox: false })
class CustomerChecked implements IIntegrationEventHandler<CustomerCheckedIntegrationEvent> {
  readonly calls: Array<{ customerId: string; attempt: number }> = [];
  handle(event: CustomerCheckedIntegrationEvent, context: IntegrationEventContext): void {
    this.calls.push({ customerId: event.customerId, attempt: context.attempt });
  }
}

@IntegrationEvent({ name: 'retry.broken-predicate', version: 1 })
class BrokenPredicateIntegrationEvent {
  constructor(readonly orderId: string) {}
}

/** Its retryable() predicate reads a field the error does not have, and throws. */
@IntegrationEventHandler(BrokenPredicateIntegrationEvent, {
  inbox: false,
  retry: { maxAttempts: 2, retryable: (error) => (error as { response: { status: number } }).response.status >= 500 },
})
class BrokenPredicate implements IIntegrationEventHandler<BrokenPredicateIntegrationEvent> {
  calls = 0;
  handle(): void {
    this.calls++;
    throw new Error('no response at all');
  }
}

/** Consumer side of retries: attempts, backoff, dead-letter queue, policy per handler. */
describe('retries and the dead-letter queue', () => {
  let ns: TestNamespace;
  let app: TestingModule;
  let recorder: OrderCreatedRecorder;
  let deadLetters: DeadLetter[];
  /** Set by a test: the onDeadLetter hook then waits for it (a webhook that hangs). */
  let hookHangsUntil: Promise<void> | undefined;
  /** A test's own meter provider, if it registered one: unregistered after it. */
  let meters: TestMeters | undefined;
  const queue = () => `${ns.serviceName}.OrderCreatedRecorder`;

  /** What the service logs (warnings included), for the tests that assert on it. */
  const logger = new CapturingLogger();

  beforeAll(async () => {
    ns = await TestNamespace.create();
    deadLetters = [];
    app = await startTestApp(ns, {
      providers: [OrderCreatedRecorder, AuditTrail, PickyHandler, OneAtATime, CustomerChecked, CopyReturned, BrokenPredicate],
      logger,
      options: {
        consumer: {
          retry: { initialDelayMs: 40, maxDelayMs: 160, jitter: 0 },
          onDeadLetter: async (deadLetter) => {
            deadLetters.push(deadLetter);
            await hookHangsUntil;
          },
        },
      },
    });
    recorder = app.get(OrderCreatedRecorder);
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
  });

  // One app, and one dead-letter queue per handler, for the whole file: each test starts with them empty,
  // whatever ran before (or failed half-way).
  beforeEach(async () => {
    for (const handler of app.get(IntegrationEventConsumers).handlers) await ns.drainQueue(handler.deadLetterQueue);
    recorder.received.length = 0;
    recorder.behaviour = () => undefined;
    app.get(AuditTrail).ids.length = 0;
    app.get(PickyHandler).calls.length = 0;
    app.get(PickyHandler).behaviour = () => undefined;
    deadLetters.length = 0;
  });

  afterEach(async () => {
    await meters?.stop();
    meters = undefined;
  });

  const publish = async (orderId: string) =>
    (await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent(orderId), { standalone: true }))[0]!;
  const callsFor = (id: string) => recorder.received.filter((r) => r.context.messageId === id);

  it('retries a message whose async validation rule failed (its service was down), instead of dead-lettering it as poison', async () => {
    ruleService.failures = 2;
    ruleService.checks = 0;
    const id = await ns.publishRaw('retry.customer-checked', JSON.stringify({ customerId: 'c-1' }));
    await eventually(() => expect(app.get(CustomerChecked).calls).toEqual([{ customerId: 'c-1', attempt: 3 }]));
    expect(ruleService.checks).toBe(3);
    expect(deadLetters.map((d) => d.messageId)).not.toContain(id);
    expect(await ns.queueDepth(`${ns.serviceName}.CustomerChecked.dlq`)).toBe(0);
  });

  it('makes its retry copies from the headers received, not from what a failing handler did to context.headers', async () => {
    recorder.behaviour = (_event, context) => {
      const headers = context.headers as Record<string, unknown>;
      delete headers['ie-event-version'];
      headers['ie-first-failure-at'] = '1999-01-01T00:00:00.000Z';
      throw new Error(`still failing (attempt ${context.attempt})`);
    };
    const id = await publish('edits-its-headers');
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(1), { timeoutMs: 20_000 });
    // Every attempt made, none refused as poison for a header the handler removed.
    expect(callsFor(id).map((r) => r.context.attempt)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const [dead] = await ns.drainQueue(`${queue()}.dlq`);
    expect(dead!.properties.headers).toMatchObject({ 'ie-dead-letter-reason': 'max-attempts', 'ie-event-version': 1 });
    expect(dead!.properties.headers!['ie-first-failure-at']).not.toBe('1999-01-01T00:00:00.000Z');
  });

  it('calls an always-failing handler exactly 10 times, then dead-letters the message with why', async () => {
    meters = registerTestMeterProvider();
    const { counts } = meters;
    recorder.behaviour = (_event, context) => {
      throw new Error(`payment gateway down (attempt ${context.attempt})`);
    };
    const id = await publish('always-fails');
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(1), { timeoutMs: 20_000 });
    await consistently(() => expect(callsFor(id)).toHaveLength(10), { forMs: 300 });
    expect(callsFor(id).map((r) => r.context.attempt)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // The metrics say the same: each call's decision, the nine retry copies placed, one dead letter. That
    // is counted once its copy's confirm is in, which may come after the queue shows the copy.
    await eventually(async () => {
      expect(await counts('integration_events.handled', 'OrderCreatedRecorder')).toEqual([
        ['ordering.order-created', 'dead_letter', 1],
        ['ordering.order-created', 'retry', 9],
      ]);
      expect(await counts('integration_events.retried', 'OrderCreatedRecorder')).toEqual([['ordering.order-created', null, 9]]);
      expect(await counts('integration_events.dead_lettered', 'OrderCreatedRecorder')).toEqual([['ordering.order-created', 'max-attempts', 1]]);
      // The event's other handler took it at once (a previous test's delivery may be counted with it).
      expect((await counts('integration_events.handled', 'AuditTrail')).map(([, outcome]) => outcome)).toEqual(['ack']);
    });
    expect(await counts('integration_events.retried', 'AuditTrail')).toEqual([]);

    const [dead] = await ns.drainQueue(`${queue()}.dlq`);
    const headers = dead!.properties.headers!;
    const row = (await (await ns.sql()).query(`SELECT payload, headers FROM ${ns.outboxTable} WHERE id = $1`, [id])).rows[0];
    // The original body bytes and headers, untouched...
    expect(dead!.content.toString('utf8')).toBe(row.payload);
    expect(dead!.properties.messageId).toBe(id);
    expect(headers).toMatchObject(row.headers);
    // ...plus why it is here.
    expect(headers).toMatchObject({
      'ie-dead-letter-reason': 'max-attempts',
      'ie-attempts': 10,
      'ie-error-name': 'Error',
      'ie-error-message': 'payment gateway down (attempt 10)',
      'ie-handler': 'OrderCreatedRecorder',
      'ie-queue': queue(),
    });
    expect(headers['ie-error-stack']).toMatch(/^Error: payment gateway down \(attempt 10\)\n\s+at /);
    expect(Date.parse(headers['ie-first-failure-at'])).toBeLessThan(Date.parse(headers['ie-last-failure-at']));
    expect(Object.keys(headers).filter((name) => name.startsWith('x-'))).toEqual([]);

    // The hook saw the same (called after the copy's confirm, which may come after the queue showed it).
    await eventually(() => expect(deadLetters).toHaveLength(1));
    expect(deadLetters[0]).toMatchObject({
      messageId: id,
      eventName: 'ordering.order-created',
      eventVersion: 1,
      queue: queue(),
      deadLetterQueue: `${queue()}.dlq`,
      handler: 'OrderCreatedRecorder',
      reason: 'max-attempts',
      attempts: 10,
      error: { name: 'Error', message: 'payment gateway down (attempt 10)' },
    });
    expect(deadLetters[0]!.body.toString('utf8')).toBe(row.payload);
    // Only the failing handler's queue was retried: the other handler of the event ran once.
    expect(app.get(AuditTrail).ids.filter((other) => other === id)).toHaveLength(1);
  });

  it('retries a handler that fails twice, then succeeds: 3 calls, nothing dead-lettered', async () => {
    recorder.behaviour = (_event, context) => {
      if (context.attempt < 3) throw new Error('transient');
    };
    const id = await publish('fails-twice');
    await eventually(() => expect(callsFor(id)).toHaveLength(3));
    await consistently(() => expect(callsFor(id)).toHaveLength(3), { forMs: 400 });
    expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(0);
    expect(deadLetters).toHaveLength(0);
    expect(callsFor(id)[2]!.context.headers).toMatchObject({ 'ie-attempt': 3, 'ie-last-error': 'Error: transient' });
  });

  it('retries and dead-letters a message of another publisher that names its event only by routing key', async () => {
    // No ie-event-name header: the routing key names the event. A retry copy comes back from its wait
    // queue with the handler's queue as routing key, so the copy must carry the name itself.
    recorder.behaviour = (_event, context) => {
      throw new Error(`always fails (attempt ${context.attempt})`);
    };
    const body = JSON.stringify({ orderId: 'no-name-header', placedAt: '2026-11-26T06:00:00.000Z' });
    const id = (await ns.publishRaw('ordering.order-created', body, { headers: { 'ie-event-name': undefined } }))!;
    await eventually(() => expect(deadLetters.map((d) => d.messageId)).toContain(id), { timeoutMs: 10_000 });
    expect(callsFor(id)).toHaveLength(10);
    const deadLetter = deadLetters.find((d) => d.messageId === id)!;
    expect(deadLetter).toMatchObject({ reason: 'max-attempts', attempts: 10 });
    expect(deadLetter.headers['ie-event-name']).toBe('ordering.order-created');
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(1));
    const [dead] = await ns.drainQueue(`${queue()}.dlq`);
    // The calls made are in ie-attempts; the retry copies' attempt and last error are not kept.
    expect(dead!.properties.headers).toMatchObject({ 'ie-attempts': 10, 'ie-error-message': 'always fails (attempt 10)' });
    expect(dead!.properties.headers).not.toHaveProperty('ie-attempt');
    expect(dead!.properties.headers).not.toHaveProperty('ie-last-error');
  });

  it('retries and dead-letters a message with the most application headers publish() allows, and long non-ASCII errors', async () => {
    // 32 KiB of application headers (the cap), plus the failure headers of an error whose message and
    // stack are three-byte characters: every copy must still fit amqplib's 64 KiB header table.
    const headers = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`h${i}`, 'v'.repeat(i === 7 ? 4_080 : 4_096)]));
    recorder.behaviour = () => {
      throw new Error('€'.repeat(5_000));
    };
    const [id] = await app.get(IntegrationEventPublisher).publish(new OrderCreatedIntegrationEvent('big-headers'), { standalone: true, headers });
    await eventually(() => expect(deadLetters.map((d) => d.messageId)).toContain(id), { timeoutMs: 10_000 });
    expect(callsFor(id!)).toHaveLength(10);
    const deadLetter = deadLetters.find((d) => d.messageId === id)!;
    expect(deadLetter).toMatchObject({ reason: 'max-attempts', attempts: 10 });
    expect(deadLetter.headers.h7).toBe('v'.repeat(4_080));
    expect(String(deadLetter.headers['ie-error-message'])).toMatch(/^€{999}…$/);
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(1));
    await ns.drainQueue(`${queue()}.dlq`);
  });

  it.each([
    ['completes', () => undefined, ": what it did stands, beside the message's retry (or its dead letter)"],
    [
      'fails',
      () => {
        throw new Error('late failure');
      },
      ', failing: Error: late failure',
    ],
  ])('logs how a call given up on its timeout ends when it %s later (no inbox)', async (ends, end, said) => {
    const picky = app.get(PickyHandler);
    picky.behaviour = async (context) => {
      if (context.attempt > 1) return;
      // Past its 300 ms timeout: it ends once given up.
      await untilAborted(context.signal);
      end();
    };
    const id = (await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: `late-${ends}`, placedAt: '2026-11-26T06:00:00.000Z' })))!;
    await eventually(() => expect(picky.calls.filter((c) => c.messageId === id).map((c) => c.attempt)).toEqual([1, 2]));
    await eventually(() =>
      expect(logger.lines).toContainEqual(
        expect.stringMatching(new RegExp(`^warn Handler PickyHandler's call for message ${id}, given up after its timeout of 300 ms, ended \\d+ ms later${said.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`)),
      ),
    );
    await consistently(() => expect(picky.calls.filter((c) => c.messageId === id)).toHaveLength(2), { forMs: 200 });
  });

  it('retries and dead-letters a message whose headers leave no room for the failure headers, instead of looping', async () => {
    // Another publisher filled the header table to the brim: the retry copy's failure headers do not fit
    // amqplib's 64 KiB. Copies then leave the application's headers out; the message is never lost.
    const picky = app.get(PickyHandler);
    picky.behaviour = () => {
      throw new Error('€'.repeat(2_000));
    };
    const headers = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`h${String(i).padStart(2, '0')}`, 'v'.repeat(4_070)]));
    const body = JSON.stringify({ orderId: 'full-headers', placedAt: '2026-11-26T06:00:00.000Z' });
    const id = (await ns.publishRaw('ordering.order-created', body, { headers }))!;
    await eventually(() => expect(deadLetters.map((d) => d.messageId)).toContain(id), { timeoutMs: 10_000 });
    expect(picky.calls.filter((c) => c.messageId === id).map((c) => c.attempt)).toEqual([1, 2, 3]);
    // From the first retry on, the copies carry the library's headers only, and say what they left out.
    const retried = picky.calls.find((c) => c.messageId === id && c.attempt === 2)!;
    expect(retried.headers).not.toHaveProperty('h00');
    expect(retried.headers['ie-dropped-headers']).toBe(Object.keys(headers).join(','));
    const deadLetter = deadLetters.find((d) => d.messageId === id)!;
    expect(deadLetter).toMatchObject({ reason: 'max-attempts', attempts: 3 });
    expect(deadLetter.body.toString()).toBe(body);
    await eventually(async () => expect(await ns.queueDepth(`${ns.serviceName}.PickyHandler.dlq`)).toBe(1));
    await ns.drainQueue(`${ns.serviceName}.PickyHandler.dlq`);
  });

  it('retries and dead-letters a message whose library headers amqplib decodes but cannot encode again, instead of looping', async () => {
    // Another client (pika, Java) sent doubles amqplib reads as numbers and would write as longs, and fails
    // to: a fraction over 2^50 and -1e300. Every copy carrying them fails to encode; the last form leaves
    // them out. (RabbitMQ itself refuses a NaN or an infinite double.)
    const picky = app.get(PickyHandler);
    picky.behaviour = () => {
      throw new Error('not yet');
    };
    const headers = {
      'ie-tenant-weight': { '!': 'double', value: 2 ** 50 + 0.5 },
      'ie-priority-score': { '!': 'double', value: -1e300 },
      tenant: 'acme',
    };
    const body = JSON.stringify({ orderId: 'odd-doubles', placedAt: '2026-11-26T06:00:00.000Z' });
    const id = (await ns.publishRaw('ordering.order-created', body, { headers }))!;
    await eventually(() => expect(deadLetters.map((d) => d.messageId)).toContain(id), { timeoutMs: 10_000 });
    expect(picky.calls.filter((c) => c.messageId === id).map((c) => c.attempt)).toEqual([1, 2, 3]);
    expect(picky.calls.find((c) => c.messageId === id && c.attempt === 1)!.headers['ie-tenant-weight']).toBe(2 ** 50 + 0.5);
    const retried = picky.calls.find((c) => c.messageId === id && c.attempt === 2)!;
    expect(retried.headers).not.toHaveProperty('ie-tenant-weight');
    expect(retried.headers['ie-dropped-headers']).toBe('tenant,ie-tenant-weight,ie-priority-score');
    const deadLetter = deadLetters.find((d) => d.messageId === id)!;
    expect(deadLetter).toMatchObject({ reason: 'max-attempts', attempts: 3 });
    expect(deadLetter.body.toString()).toBe(body);
    await eventually(async () => expect(await ns.queueDepth(`${ns.serviceName}.PickyHandler.dlq`)).toBe(1));
    await ns.drainQueue(`${ns.serviceName}.PickyHandler.dlq`);
  });

  it('tells onDeadLetter the headers of the copy in the dead-letter queue when the full set did not fit', async () => {
    const picky = app.get(PickyHandler);
    picky.behaviour = () => {
      throw new NonRetryableError('€'.repeat(2_000));
    };
    const headers = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`h${String(i).padStart(2, '0')}`, 'v'.repeat(4_070)]));
    const id = (await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'full-headers-dead' }), { headers }))!;
    await eventually(() => expect(deadLetters.map((d) => d.messageId)).toContain(id), { timeoutMs: 10_000 });
    await eventually(async () => expect(await ns.queueDepth(`${ns.serviceName}.PickyHandler.dlq`)).toBe(1));
    const [dlqCopy] = await ns.drainQueue(`${ns.serviceName}.PickyHandler.dlq`);
    const deadLetter = deadLetters.find((d) => d.messageId === id)!;
    // Only the library's headers fitted, with the names of those left out.
    expect(dlqCopy!.properties.headers).not.toHaveProperty('h00');
    expect(deadLetter.headers).toEqual(dlqCopy!.properties.headers);
  });

  it('bounds a hanging onDeadLetter hook by the handler\'s timeout, so the handler\'s queue goes on', async () => {
    let release!: () => void;
    hookHangsUntil = new Promise<void>((resolve) => (release = resolve));
    try {
      const handler = app.get(OneAtATime);
      await ns.publishRaw('retry.one-at-a-time', JSON.stringify({ orderId: 'first' }));
      await eventually(() => expect(deadLetters.map((d) => d.eventName)).toContain('retry.one-at-a-time'));
      // The hook hangs with the handler's only slot; the next message waits at most its 300 ms timeout.
      await ns.publishRaw('retry.one-at-a-time', JSON.stringify({ orderId: 'second' }));
      await eventually(() => expect(handler.calls).toEqual(['first', 'second']), { timeoutMs: 5_000 });
      await eventually(async () => expect(await ns.queueDepth(`${ns.serviceName}.OneAtATime.dlq`)).toBe(2));
    } finally {
      release();
      hookHangsUntil = undefined;
    }
    await ns.drainQueue(`${ns.serviceName}.OneAtATime.dlq`);
  });

  it('waits between attempts as the policy says: 40, 80, 160, 160 ms (no jitter), never less', async () => {
    const times: number[] = [];
    recorder.behaviour = () => {
      times.push(Date.now());
      throw new Error('still failing');
    };
    const id = await publish('timed');
    await eventually(() => expect(callsFor(id).length).toBeGreaterThanOrEqual(5), { timeoutMs: 10_000 });
    const gaps = times.slice(1, 5).map((time, index) => time - times[index]!);
    [40, 80, 160, 160].forEach((planned, index) => {
      expect(gaps[index]).toBeGreaterThanOrEqual(planned - 5);
      // Generous upper bound: a TTL queue only expires at its head, and the machine is busy.
      expect(gaps[index]).toBeLessThan(planned * 3 + 1_000);
    });
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(1), { timeoutMs: 20_000 });
    await ns.drainQueue(`${queue()}.dlq`);
  });

  it('dead-letters at once on NonRetryableError, with the cause it wraps', async () => {
    recorder.behaviour = () => {
      throw new NonRetryableError('customer does not exist', { cause: new RangeError('customer 42 not in the ledger') });
    };
    const id = await publish('not-retryable');
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(1));
    expect(callsFor(id)).toHaveLength(1);
    const [dead] = await ns.drainQueue(`${queue()}.dlq`);
    expect(dead!.properties.headers).toMatchObject({
      'ie-dead-letter-reason': 'non-retryable',
      'ie-attempts': 1,
      'ie-error-name': 'NonRetryableError',
      'ie-error-message': 'customer does not exist; caused by RangeError: customer 42 not in the ledger',
    });
    expect(String(dead!.properties.headers!['ie-error-stack'])).toContain('Caused by: RangeError: customer 42 not in the ledger');
  });

  it('keeps another publisher\'s x- headers and properties on retry and dead-letter copies, and drops the broker\'s', async () => {
    recorder.behaviour = (_event, context) => {
      throw context.attempt < 2 ? new Error('transient') : new NonRetryableError('refused');
    };
    const id = (await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'foreign-x' }), {
      headers: { 'x-tenant-id': 'acme', 'x-request-id': 'r-42' },
      properties: { priority: 3, replyTo: 'replies' },
    }))!;
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(1));
    // The retry came back through the wait queue, which RabbitMQ dead-letters with its own x-death.
    expect(callsFor(id).map((r) => [r.context.attempt, r.context.headers['x-tenant-id'], r.context.headers['x-request-id']])).toEqual([
      [1, 'acme', 'r-42'],
      [2, 'acme', 'r-42'],
    ]);
    const [dead] = await ns.drainQueue(`${queue()}.dlq`);
    expect(dead!.properties).toMatchObject({ messageId: id, priority: 3, replyTo: 'replies' });
    expect(dead!.properties.headers).toMatchObject({ 'x-tenant-id': 'acme', 'x-request-id': 'r-42', 'ie-dead-letter-reason': 'non-retryable' });
    expect(Object.keys(dead!.properties.headers!).filter((name) => name.startsWith('x-')).sort()).toEqual(['x-request-id', 'x-tenant-id']);
  });

  it('returns a failed message to its queue, attempt unchanged, while the broker blocks publishing, instead of holding its slot', async () => {
    // What RabbitMQ's 'connection.blocked' (a memory or disk alarm) makes the publishing connection say.
    const publishing = app.get(RabbitMqPublishingConnection);
    let blocked = true;
    Object.defineProperty(publishing, 'isBlocked', { configurable: true, get: () => blocked });
    try {
      recorder.behaviour = (_event, context) => {
        if (context.attempt < 2) throw new Error('transient');
      };
      // Published by another service (this one's relay waits while blocked).
      const id = (await ns.publishRaw('ordering.order-created', JSON.stringify({ orderId: 'during-an-alarm' })))!;
      await eventually(() => expect(callsFor(id).length).toBeGreaterThanOrEqual(2));
      expect(callsFor(id).map((r) => r.context.attempt).slice(0, 2)).toEqual([1, 1]);
      blocked = false;
      await eventually(() => expect(callsFor(id).map((r) => r.context.attempt)).toContain(2));
      expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(0);
    } finally {
      delete (publishing as { isBlocked?: boolean }).isBlocked;
    }
  });

  it('gives a retry copy none of the headers of the dead-letter copy made before it', async () => {
    // Both copies go out through the consumer's one reused headers object (ReusedHeadersTable).
    recorder.behaviour = (event, context) => {
      if (event.orderId === 'dead-first') throw new NonRetryableError('refused');
      if (context.attempt < 2) throw new Error('transient');
    };
    await publish('dead-first');
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(1));
    const id = await publish('retried-after');
    await eventually(() => expect(callsFor(id)).toHaveLength(2));

    const retried = callsFor(id)[1]!.context.headers;
    expect(retried).toMatchObject({ 'ie-attempt': 2, 'ie-last-error': 'Error: transient' });
    const deadLetterOnly = ['ie-dead-letter-reason', 'ie-attempts', 'ie-error-name', 'ie-error-message', 'ie-error-stack', 'ie-handler', 'ie-queue', 'ie-dead-lettered-at'];
    expect(Object.keys(retried).filter((name) => deadLetterOnly.includes(name))).toEqual([]);
    await ns.drainQueue(`${queue()}.dlq`);
  });

  it('declares a deleted dead-letter queue again instead of losing the message', async () => {
    recorder.behaviour = () => {
      throw new NonRetryableError('refused');
    };
    const channel = await (await ns.amqp()).createChannel();
    await channel.deleteQueue(`${queue()}.dlq`);
    await channel.close();

    // RabbitMQ would confirm a copy sent to no queue: the copy is mandatory, so it comes back, the
    // handler's queues are declared again, and the message is handled and dead-lettered again.
    const id = await publish('dlq-deleted');
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(1), { timeoutMs: 15_000 });
    const [dead] = await ns.drainQueue(`${queue()}.dlq`);
    expect(dead!.properties.messageId).toBe(id);
    expect(dead!.properties.headers).toMatchObject({ 'ie-dead-letter-reason': 'non-retryable' });
    expect(callsFor(id)).toHaveLength(2);
    // The hook is called once the copy's confirm is in, which may come after the queue shows the copy.
    await eventually(() => expect(deadLetters.map((deadLetter) => deadLetter.messageId)).toEqual([id]));
  });

  it('declares a deleted wait queue again instead of losing the retry', async () => {
    recorder.behaviour = (_event, context) => {
      if (context.attempt === 1) throw new Error('transient');
    };
    const channel = await (await ns.amqp()).createChannel();
    // The first retry (40 ms, no jitter) waits in the first tier's queue.
    await channel.deleteQueue(`${queue()}.retry.0ms`);
    await channel.close();

    const id = await publish('wait-queue-deleted');
    await eventually(() => expect(callsFor(id).map((r) => r.context.attempt)).toEqual([1, 1, 2]), { timeoutMs: 15_000 });
    await consistently(() => expect(callsFor(id)).toHaveLength(3), { forMs: 300 });
  });

  it('keeps the acks of the other calls on the consumer\'s channel when a copy comes back from a deleted wait queue', async () => {
    const handler = app.get(CopyReturned);
    const handlerQueue = `${ns.serviceName}.CopyReturned`;
    const waitQueue = `${handlerQueue}.retry.0ms`;
    let openGate!: () => void;
    handler.gate = new Promise<void>((resolve) => (openGate = resolve));
    const channel = await (await ns.amqp()).createChannel();
    await channel.deleteQueue(waitQueue);
    await channel.close();
    const publishEvent = (orderId: string) => app.get(IntegrationEventPublisher).publish(new CopyReturnedIntegrationEvent(orderId), { standalone: true });
    const exists = (queue: string) => ns.queueDepth(queue).then(() => true, () => false);

    // A call that is still running on the consumer's channel when another message's retry copy comes back.
    await publishEvent('slow');
    await eventually(() => expect(handler.calls.map((call) => call.orderId)).toEqual(['slow']));
    await publishEvent('returned');
    await eventually(async () => expect(await exists(waitQueue)).toBe(true), { timeoutMs: 10_000 });
    openGate();
    await eventually(() => expect(handler.calls.filter((call) => call.orderId === 'returned').map((call) => call.attempt)).toEqual([1, 1, 2]), {
      timeoutMs: 15_000,
    });
    // Its ack went out on the channel it came on: it did not come back to run again.
    await consistently(() => expect(handler.calls.filter((call) => call.orderId === 'slow')).toEqual([{ orderId: 'slow', attempt: 1, redelivered: false }]), {
      forMs: 500,
    });
    expect(await ns.queueDepth(handlerQueue)).toBe(0);
  });

  it('counts a handler that throws a revoked Proxy (every check of it throws) as failing: retried, then dead-lettered', async () => {
    recorder.behaviour = () => {
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      throw proxy;
    };
    const id = await publish('throws-revoked-proxy');
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(1), { timeoutMs: 20_000 });
    expect(callsFor(id).map((r) => r.context.attempt)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const [dead] = await ns.drainQueue(`${queue()}.dlq`);
    expect(dead!.properties.headers).toMatchObject({ 'ie-dead-letter-reason': 'max-attempts', 'ie-error-name': 'NonError' });
  });

  it('retries a failure whose retryable() predicate throws, and says so in a warning naming the handler', async () => {
    const [id] = await app.get(IntegrationEventPublisher).publish(new BrokenPredicateIntegrationEvent('o-broken'), { standalone: true });
    const dlq = `${ns.serviceName}.BrokenPredicate.dlq`;
    await eventually(async () => expect(await ns.queueDepth(dlq)).toBe(1));
    expect(app.get(BrokenPredicate).calls).toBe(2);
    expect((await ns.drainQueue(dlq))[0]!.properties.headers?.['ie-dead-letter-reason']).toBe('max-attempts');
    expect(logger.lines.filter((line) => line.includes('retry.retryable() predicate of BrokenPredicate threw'))).toEqual([
      `warn The retry.retryable() predicate of BrokenPredicate threw on message ${id} (TypeError: Cannot read properties of undefined (reading 'status')); the failure counts as retryable IntegrationEvents:Consumer`,
      `warn The retry.retryable() predicate of BrokenPredicate threw on message ${id} (TypeError: Cannot read properties of undefined (reading 'status')); the failure counts as retryable IntegrationEvents:Consumer`,
    ]);
  });

  it('applies a handler\'s own policy: its attempts, its retryable errors, its timeout', async () => {
    const picky = app.get(PickyHandler);
    const dlq = `${ns.serviceName}.PickyHandler.dlq`;

    picky.behaviour = () => {
      throw new Error('flaky');
    };
    const flaky = await publish('picky-flaky');
    await eventually(async () => expect(await ns.queueDepth(dlq)).toBe(1));
    expect(picky.calls.filter((c) => c.messageId === flaky)).toHaveLength(3);
    await ns.drainQueue(dlq);

    picky.behaviour = () => {
      throw new TypeError('bad data');
    };
    const typed = await publish('picky-type-error');
    await eventually(async () => expect(await ns.queueDepth(dlq)).toBe(1));
    expect(picky.calls.filter((c) => c.messageId === typed)).toHaveLength(1);
    expect((await ns.drainQueue(dlq))[0]!.properties.headers?.['ie-dead-letter-reason']).toBe('non-retryable');

    // A hung handler: each attempt is cut at 300 ms, its signal says why, and the attempts run out.
    picky.behaviour = () => new Promise<void>(() => undefined);
    const hung = await publish('picky-hung');
    await eventually(async () => expect(await ns.queueDepth(dlq)).toBe(1), { timeoutMs: 10_000 });
    const calls = picky.calls.filter((c) => c.messageId === hung);
    expect(calls).toHaveLength(3);
    expect(calls.every((c) => c.signal.aborted && c.signal.reason instanceof HandlerTimeoutError)).toBe(true);
    expect((await ns.drainQueue(dlq))[0]!.properties.headers).toMatchObject({
      'ie-error-name': 'HandlerTimeoutError',
      'ie-attempts': 3,
    });
  });

  it('clamps a forged attempt header instead of trusting it', async () => {
    recorder.behaviour = () => {
      throw new Error('fails');
    };
    const body = JSON.stringify({ orderId: 'forged', placedAt: new Date().toISOString() });
    await ns.publishRaw('ordering.order-created', body, { messageId: 'huge', headers: { 'ie-attempt': 1_000_000 } });
    await eventually(async () => expect(await ns.queueDepth(`${queue()}.dlq`)).toBe(1));
    // Clamped to the last attempt: one call, then the dead-letter queue.
    expect(callsFor('huge').map((r) => r.context.attempt)).toEqual([10]);
    await ns.drainQueue(`${queue()}.dlq`);

    recorder.behaviour = () => undefined;
    for (const [messageId, attempt] of [['negative', -5], ['text', 'many'], ['fraction', 2.5]] as const) {
      await ns.publishRaw('ordering.order-created', body, { messageId, headers: { 'ie-attempt': attempt } });
      await eventually(() => expect(callsFor(messageId).map((r) => r.context.attempt)).toEqual([1]));
    }
  });
});
