import type { TestingModule } from '@nestjs/testing';
import * as amqp from 'amqplib';
import type { ConfirmChannel } from 'amqplib';
import { DeadLetterService, IntegrationEventPublisher, NonRetryableError, RequeueInterruptedError } from 'nestjs-integration-events';
import { DeadLetterQueueOperations } from '../libs/integration-events/src/dead-letter/dead-letter-queue.operations';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { consistently, eventually } from './support/eventually';
import { TEST_RABBITMQ_URL } from './support/services';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/** Replay: list, inspect, requeue (one, some, all) and purge dead letters, through the injectable service. */
describe('dead-letter replay (DeadLetterService)', () => {
  let ns: TestNamespace;
  let app: TestingModule;
  let recorder: OrderCreatedRecorder;
  let deadLetters: DeadLetterService;
  const dlq = () => `${ns.serviceName}.OrderCreatedRecorder.dlq`;

  beforeAll(async () => {
    ns = await TestNamespace.create();
    app = await startTestApp(ns, { providers: [OrderCreatedRecorder] });
    recorder = app.get(OrderCreatedRecorder);
    deadLetters = app.get(DeadLetterService);
  });

  // The handler's dead-letter queue is one for the whole file (one app, one handler): each test starts with
  // it empty, whatever ran before (or failed half-way), and with the handler failing its "broken" events.
  beforeEach(async () => {
    recorder.behaviour = (event) => {
      if (event.orderId.startsWith('broken')) throw new NonRetryableError(`cannot handle ${event.orderId} yet`);
    };
    recorder.received.length = 0;
    await ns.drainQueue(dlq());
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
  });

  /**
   * Dead-letters `count` fresh events (orders broken-0, broken-1, …) into the handler's (emptied) dead-letter
   * queue; their ids in queue order (handlers run concurrently, so not necessarily publish order).
   */
  const deadLetterFresh = async (count: number): Promise<string[]> => {
    const published = await app
      .get(IntegrationEventPublisher)
      .publish(Array.from({ length: count }, (_, i) => new OrderCreatedIntegrationEvent(`broken-${i}`)), { standalone: true });
    await eventually(async () => expect(await ns.queueDepth(dlq())).toBe(count));
    const ids = (await deadLetters.list(dlq())).messages.map((m) => m.messageId!);
    expect([...ids].sort()).toEqual([...published].sort());
    return ids;
  };

  const handledIds = () => recorder.received.filter((r) => !r.context.headers['ie-dead-letter-reason']).map((r) => r.context);

  it('gives an overview and lists dead letters, oldest first, without taking them out', async () => {
    const ids = await deadLetterFresh(6);
    const overview = await deadLetters.overview();
    expect(overview).toEqual([{ handler: 'OrderCreatedRecorder', queue: `${ns.serviceName}.OrderCreatedRecorder`, deadLetterQueue: dlq(), messages: 6 }]);
    const { total, messages } = await deadLetters.list(dlq(), 4);
    expect(total).toBe(6);
    expect(messages.map((m) => m.messageId)).toEqual(ids.slice(0, 4));
    expect(messages[0]).toMatchObject({
      eventName: 'ordering.order-created',
      reason: 'non-retryable',
      attempts: 1,
      handler: 'OrderCreatedRecorder',
      error: expect.stringMatching(/^NonRetryableError: cannot handle broken-\d yet$/),
    });
    expect(await ns.queueDepth(dlq())).toBe(6);
    // Listing twice shows the same order: what was looked at went back in its place.
    expect((await deadLetters.list(dlq(), 6)).messages.map((m) => m.messageId)).toEqual(ids);
  });

  it('shows one dead letter whole', async () => {
    const ids = await deadLetterFresh(3);
    const shown = await deadLetters.show(dlq(), ids[2]!);
    expect(shown).toMatchObject({ messageId: ids[2], bodyEncoding: 'utf8', reason: 'non-retryable' });
    expect(JSON.parse(shown!.body).orderId).toMatch(/^broken-\d$/);
    expect(shown!.headers).toMatchObject({ 'ie-event-name': 'ordering.order-created', 'ie-queue': `${ns.serviceName}.OrderCreatedRecorder` });
    expect(await deadLetters.show(dlq(), 'no-such-id')).toBeUndefined();
  });

  it('requeues one: same message id, attempts afresh, only this handler runs it', async () => {
    const ids = await deadLetterFresh(6);
    recorder.behaviour = () => undefined; // the bug is fixed
    recorder.received.length = 0;
    const result = await deadLetters.requeue(dlq(), { messageIds: [ids[0]!] });
    expect(result).toEqual({ requeued: [ids[0]], missing: [], withoutConsumers: [] });
    await eventually(() => expect(handledIds().map((c) => c.messageId)).toEqual([ids[0]]));
    const context = handledIds()[0]!;
    expect(context.attempt).toBe(1);
    expect(Object.keys(context.headers).filter((name) => /^ie-(attempt|dead-letter|error|first-failure|last-failure)/.test(name))).toEqual([]);
    expect(await ns.queueDepth(dlq())).toBe(5);
  });

  it("requeues a foreign dead letter whose headers amqplib cannot encode again, leaving those out (named), instead of stopping at it", async () => {
    const queue = `${ns.serviceName}.OrderCreatedRecorder`;
    const channel = await (await ns.amqp()).createConfirmChannel();
    try {
      for (const [id, extra] of [
        // Decoded as -1e300, a number amqplib would send as a long, and cannot.
        ['foreign-odd', { 'x-odd-score': { '!': 'double', value: -1e300 } }],
        ['foreign-plain', {}],
      ] as const) {
        channel.sendToQueue(dlq(), Buffer.from(JSON.stringify({ orderId: id, placedAt: '2026-11-27T06:00:00.000Z' })), {
          messageId: id,
          persistent: true,
          headers: { 'ie-queue': queue, 'ie-event-name': 'ordering.order-created', 'ie-event-version': 1, 'ie-occurred-at': '2026-11-27T06:00:00.000Z', ...extra },
        });
      }
      await channel.waitForConfirms();
    } finally {
      await channel.close();
    }
    await expect(deadLetters.requeue(dlq(), { all: true })).resolves.toEqual({ requeued: ['foreign-odd', 'foreign-plain'], missing: [], withoutConsumers: [] });
    await eventually(() => expect(handledIds().map((c) => c.messageId).sort()).toEqual(['foreign-odd', 'foreign-plain']));
    const odd = handledIds().find((c) => c.messageId === 'foreign-odd')!;
    expect(odd.headers['ie-dropped-headers']).toBe('x-odd-score');
    expect(odd.headers['x-odd-score']).toBeUndefined();
    expect(handledIds().find((c) => c.messageId === 'foreign-plain')!.headers['ie-dropped-headers']).toBeUndefined();
    expect(await ns.queueDepth(dlq())).toBe(0);
  });

  it('requeues some, reporting the ids it did not find', async () => {
    const ids = await deadLetterFresh(5);
    recorder.behaviour = () => undefined; // the bug is fixed
    recorder.received.length = 0;
    const result = await deadLetters.requeue(dlq(), { messageIds: [ids[1]!, ids[3]!, 'no-such-id'] });
    expect(result).toEqual({ requeued: [ids[1], ids[3]], missing: ['no-such-id'], withoutConsumers: [] });
    await eventually(() => expect(handledIds().map((c) => c.messageId).sort()).toEqual([ids[1], ids[3]].sort()));
    // The others stay, in their order.
    expect((await deadLetters.list(dlq())).messages.map((m) => m.messageId)).toEqual([ids[0], ids[2], ids[4]]);
  });

  it('purges some, then requeues all that is left', async () => {
    const ids = await deadLetterFresh(3);
    recorder.behaviour = () => undefined; // the bug is fixed
    expect(await deadLetters.purge(dlq(), { messageIds: [ids[1]!] })).toEqual({ purged: 1, missing: [] });
    recorder.received.length = 0;
    expect((await deadLetters.requeue(dlq(), { all: true })).requeued).toEqual([ids[0], ids[2]]);
    await eventually(() => expect(handledIds().map((c) => c.messageId).sort()).toEqual([ids[0], ids[2]].sort()));
    await consistently(() => expect(handledIds().map((c) => c.messageId)).not.toContain(ids[1]), { forMs: 200 });
    expect(await ns.queueDepth(dlq())).toBe(0);
  });

  it('keeps a dead letter whose queue is deleted between the check and the copy (the copy comes back)', async () => {
    // The race, made to happen: the operations find the queue, then it is gone when the copy is sent.
    // (The library's internals, as Jest maps the package to its source.)
    const exists = jest
      .spyOn(DeadLetterQueueOperations.prototype as unknown as { inspectQueue: () => Promise<{ exists: boolean; consumers: number }> }, 'inspectQueue')
      .mockResolvedValue({ exists: true, consumers: 1 });
    const gone = ns.trackQueue(`${ns.serviceName}.gone`);
    const channel = await (await ns.amqp()).createChannel();
    try {
      channel.sendToQueue(dlq(), Buffer.from('{"orderId":"orphan"}'), { messageId: 'orphan-1', headers: { 'ie-queue': gone } });
      await eventually(async () => expect((await deadLetters.list(dlq())).messages.map((m) => m.messageId)).toContain('orphan-1'));

      await expect(deadLetters.requeue(dlq(), { messageIds: ['orphan-1'] })).rejects.toThrow(`Queue "${gone}" is gone`);
      expect((await deadLetters.list(dlq())).messages.map((m) => m.messageId)).toContain('orphan-1');
    } finally {
      exists.mockRestore();
      await channel.close();
    }
    expect(await deadLetters.purge(dlq(), { messageIds: ['orphan-1'] })).toEqual({ purged: 1, missing: [] });
  });

  it('says why a copy could not be sent at all (its channel closed), naming the dead letter, which stays', async () => {
    const target = `${ns.serviceName}.OrderCreatedRecorder`;
    const channel = await (await ns.amqp()).createConfirmChannel();
    channel.sendToQueue(dlq(), Buffer.from('{"orderId":"unsent"}'), { messageId: 'unsent-1', headers: { 'ie-queue': target } });
    await channel.waitForConfirms();
    // amqplib's confirm channel class, whose instances the operations get from their connection.
    const confirmChannelClass = Object.getPrototypeOf(channel) as ConfirmChannel;
    await channel.close();
    await eventually(async () => expect((await deadLetters.list(dlq())).messages.map((m) => m.messageId)).toContain('unsent-1'));
    const send = jest.spyOn(confirmChannelClass, 'sendToQueue').mockImplementationOnce(() => {
      throw new Error('Channel closed');
    });
    try {
      const started = performance.now();
      await expect(deadLetters.requeue(dlq(), { messageIds: ['unsent-1'] })).rejects.toThrow(
        `The requeued copy of unsent-1 could not be sent to "${target}" (Channel closed); it stays a dead letter`,
      );
      // Not after the copy's confirm timeout (10 s): nothing waits for a confirm that cannot come.
      expect(performance.now() - started).toBeLessThan(5_000);
    } finally {
      send.mockRestore();
    }
    expect((await deadLetters.list(dlq())).messages.map((m) => m.messageId)).toContain('unsent-1');
    expect(await deadLetters.purge(dlq(), { messageIds: ['unsent-1'] })).toEqual({ purged: 1, missing: [] });
  });

  it('says why it cannot check a dead letter\'s queue when the broker refuses to say (another connection\'s exclusive queue), instead of "does not exist"', async () => {
    const connection = await ns.amqp();
    const holder = await connection.createChannel();
    const locked = ns.trackQueue(`${ns.serviceName}.locked`);
    await holder.assertQueue(locked, { exclusive: true });
    const channel = await connection.createChannel();
    try {
      channel.sendToQueue(dlq(), Buffer.from('{"orderId":"locked"}'), { messageId: 'locked-1', headers: { 'ie-queue': locked } });
      await eventually(async () => expect((await deadLetters.list(dlq())).messages.map((m) => m.messageId)).toContain('locked-1'));
      const error = (await deadLetters.requeue(dlq(), { messageIds: ['locked-1'] }).then(
        () => undefined,
        (e: unknown) => e,
      )) as Error;
      expect(error).toBeInstanceOf(Error);
      expect(error.message).toMatch(new RegExp(`Could not check queue "${locked}": .*RESOURCE_LOCKED`));
      expect(error.message).not.toMatch(/does not exist/);
      expect((await deadLetters.list(dlq())).messages.map((m) => m.messageId)).toContain('locked-1');
    } finally {
      await channel.close();
      await holder.close();
    }
    expect(await deadLetters.purge(dlq(), { messageIds: ['locked-1'] })).toEqual({ purged: 1, missing: [] });
  });

  it('counts a dead-letter queue without reading a message when the limit is 0 (an overview)', async () => {
    const queue = ns.trackQueue(`${ns.serviceName}.counted.dlq`);
    const connection = await ns.amqp();
    const channel = await connection.createConfirmChannel();
    try {
      await channel.assertQueue(queue, { durable: true });
      channel.sendToQueue(queue, Buffer.from('{}'), { messageId: 'counted-1' });
      await channel.waitForConfirms();
      const operations = new DeadLetterQueueOperations(() => connection.createConfirmChannel());
      expect(await operations.list(queue, 0)).toEqual({ total: 1, messages: [] });
      await expect(operations.list(queue, -1)).rejects.toThrow('must be a whole number from 0');
      // Never read: the broker has not delivered it to anyone yet.
      const message = await channel.get(queue, { noAck: true });
      expect(message && { id: message.properties.messageId, redelivered: message.fields.redelivered }).toEqual({ id: 'counted-1', redelivered: false });
    } finally {
      await channel.close();
    }
  });

  it('counts each message it purges, also two with one id, and refuses to requeue a dead letter that names no queue', async () => {
    const queue = ns.trackQueue(`${ns.serviceName}.elsewhere.dead`);
    const connection = await ns.amqp();
    const channel = await connection.createConfirmChannel();
    try {
      await channel.assertQueue(queue, { durable: true });
      // Dead-lettered twice (a duplicate delivery), and one moved here by another tool, without failure headers.
      for (const messageId of ['twice', 'twice', 'moved']) channel.sendToQueue(queue, Buffer.from('{}'), { messageId });
      await channel.waitForConfirms();
      const operations = new DeadLetterQueueOperations(() => connection.createConfirmChannel());
      await expect(operations.requeue(queue, { messageIds: ['moved'] })).rejects.toThrow(
        `Dead letter moved in "${queue}" does not say which queue it came from`,
      );
      expect((await operations.list(queue)).messages.map((m) => m.messageId)).toEqual(['twice', 'twice', 'moved']);
      expect(await operations.purge(queue, { messageIds: ['twice', 'nowhere'] })).toEqual({ purged: 2, missing: ['nowhere'] });
      expect(await ns.queueDepth(queue)).toBe(1);
      // A dead letter without a message id (another publisher's poison) is picked by the empty id.
      channel.sendToQueue(queue, Buffer.from('not json'), {});
      await channel.waitForConfirms();
      expect((await operations.list(queue)).messages.map((m) => m.messageId)).toEqual(['moved', undefined]);
      expect(await operations.show(queue, '')).toMatchObject({ body: 'not json' });
      expect(await operations.purge(queue, { messageIds: [''] })).toEqual({ purged: 1, missing: [] });
      expect((await operations.list(queue)).messages.map((m) => m.messageId)).toEqual(['moved']);
    } finally {
      await channel.close();
    }
  });

  /** A dead letter for `target` alone in a fresh dead-letter queue; both queues tracked for cleanup. */
  const oneDeadLetter = async (name: string) => {
    const deadLetterQueue = ns.trackQueue(`${ns.serviceName}.${name}.dlq`);
    const target = ns.trackQueue(`${ns.serviceName}.${name}`);
    const connection = await ns.amqp();
    const channel = await connection.createConfirmChannel();
    try {
      for (const queue of [deadLetterQueue, target]) await channel.assertQueue(queue, { durable: true });
      channel.sendToQueue(deadLetterQueue, Buffer.from('{}'), { messageId: name, headers: { 'ie-queue': target } });
      await channel.waitForConfirms();
    } finally {
      await channel.close();
    }
    return { connection, deadLetterQueue, target };
  };

  it('copies no dead letter whose reading channel closed before its copy (a lost connection): it stays, and only there', async () => {
    const { connection, deadLetterQueue, target } = await oneDeadLetter('closed-before-copy');
    const readers: ConfirmChannel[] = [];
    const operations = new DeadLetterQueueOperations(
      () => connection.createConfirmChannel(),
      async () => {
        // The requeue's look at its target queue comes once the dead letter is read: the scan's channel closes then.
        if (readers.length === 1) await readers[0]!.close();
        const channel = await connection.createConfirmChannel();
        readers.push(channel);
        return channel;
      },
    );
    const failure = (await operations.requeue(deadLetterQueue, { all: true }).catch((error: unknown) => error)) as RequeueInterruptedError;
    expect(failure).toBeInstanceOf(RequeueInterruptedError);
    expect(failure.requeued).toEqual([]);
    expect(failure.message).toContain('closed before closed-before-copy was copied; it stays a dead letter');
    expect(await ns.queueDepth(target)).toBe(0);
    expect(await ns.queueDepth(deadLetterQueue)).toBe(1);
  });

  it('says so when the reading channel closed while the copy was on its way: the message is in both queues', async () => {
    const { connection, deadLetterQueue, target } = await oneDeadLetter('closed-during-copy');
    const readers: ConfirmChannel[] = [];
    const operations = new DeadLetterQueueOperations(
      async () => {
        const copies = await connection.createConfirmChannel();
        const send = copies.sendToQueue.bind(copies);
        // The copy goes once the scan's channel has closed (the broker has put the dead letter back).
        copies.sendToQueue = (...args: Parameters<ConfirmChannel['sendToQueue']>) => {
          void readers[0]!.close().then(() => send(...args));
          return true;
        };
        return copies;
      },
      async () => {
        const channel = await connection.createConfirmChannel();
        readers.push(channel);
        return channel;
      },
    );
    const failure = (await operations.requeue(deadLetterQueue, { all: true }).catch((error: unknown) => error)) as RequeueInterruptedError;
    expect(failure).toBeInstanceOf(RequeueInterruptedError);
    expect(failure.requeued).toEqual(['closed-during-copy']);
    expect(failure.message).toContain(`its copy is in "${target}", and the dead letter is back in "${deadLetterQueue}" too`);
    // Not also counted among those gone from the dead-letter queue, and named for a script to purge.
    expect(failure.message).toMatch(/Nothing was requeued before it\.$/);
    expect(failure.inBothQueues).toBe('closed-during-copy');
    expect(await ns.queueDepth(target)).toBe(1);
    expect(await ns.queueDepth(deadLetterQueue)).toBe(1);
  });

  it('says the copy may be in its queue already when the connection is lost before its confirm; the dead letter stays', async () => {
    const { deadLetterQueue, target } = await oneDeadLetter('lost-before-confirm');
    // One connection of its own for both channels, as on the command line; it is lost once the copy has been sent.
    const connection = await amqp.connect(TEST_RABBITMQ_URL);
    connection.on('error', () => undefined);
    const operations = new DeadLetterQueueOperations(
      async () => {
        const copies = await connection.createConfirmChannel();
        copies.on('error', () => undefined);
        const send = copies.sendToQueue.bind(copies);
        copies.sendToQueue = (...args: Parameters<ConfirmChannel['sendToQueue']>) => {
          const sent = send(...args);
          (connection as unknown as { connection: { stream: { destroy(error: Error): void } } }).connection.stream.destroy(new Error('connection lost'));
          return sent;
        };
        return copies;
      },
      () => connection.createConfirmChannel(),
    );
    const failure = (await operations.requeue(deadLetterQueue, { all: true }).catch((error: unknown) => error)) as RequeueInterruptedError;
    expect(failure).toBeInstanceOf(RequeueInterruptedError);
    expect(failure.requeued).toEqual([]);
    expect(failure.message).toContain(
      `The channel closed before the broker confirmed the requeued copy of lost-before-confirm (channel closed): it stays a dead letter, and the copy may be in "${target}" already`,
    );
    await eventually(async () => expect(await ns.queueDepth(deadLetterQueue)).toBe(1));
  });

  it("refuses to purge all of a queue that has consumers (a handler's queue, named by mistake), and purges nothing", async () => {
    // A queue with a consumer holding one message unacknowledged, and two more ready.
    const queue = ns.trackQueue(`${ns.serviceName}.busy-work`);
    const channel = await (await ns.amqp()).createChannel();
    try {
      await channel.assertQueue(queue);
      for (const n of [1, 2, 3]) channel.sendToQueue(queue, Buffer.from(`{"n":${n}}`), { messageId: `work-${n}` });
      await channel.prefetch(1);
      const held: unknown[] = [];
      await channel.consume(queue, (message) => held.push(message));
      await eventually(() => expect(held).toHaveLength(1));
      await expect(deadLetters.purge(queue, { all: true })).rejects.toThrow(
        `Queue "${queue}" has 1 consumer(s), and nothing consumes a dead-letter queue`,
      );
      expect((await channel.checkQueue(queue)).messageCount).toBe(2);
    } finally {
      await channel.close();
    }
    await expect(deadLetters.purge(`${ns.serviceName}.no-such-queue.dlq`, { all: true })).rejects.toThrow(
      `Queue "${ns.serviceName}.no-such-queue.dlq" does not exist`,
    );
  });

  it('refuses to purge all of a retry wait queue (nothing consumes it, but its messages wait for their next attempt); by id it purges', async () => {
    const queue = ns.trackQueue(`${ns.serviceName}.busy-work.retry.2000ms`);
    const channel = await (await ns.amqp()).createChannel();
    try {
      await channel.assertQueue(queue);
      for (const n of [1, 2]) channel.sendToQueue(queue, Buffer.from(`{"n":${n}}`), { messageId: `waiting-${n}` });
      await eventually(async () => expect((await channel.checkQueue(queue)).messageCount).toBe(2));
      await expect(deadLetters.purge(queue, { all: true })).rejects.toThrow(
        `Queue "${queue}" is named as a handler's retry wait queue, whose messages wait for their next attempt`,
      );
      expect((await channel.checkQueue(queue)).messageCount).toBe(2);
      await expect(deadLetters.purge(queue, { messageIds: ['waiting-1'] })).resolves.toEqual({ purged: 1, missing: [] });
      await eventually(async () => expect((await channel.checkQueue(queue)).messageCount).toBe(1));
    } finally {
      await channel.close();
    }
  });

  it('purges all', async () => {
    recorder.behaviour = () => {
      throw new NonRetryableError('again');
    };
    await app.get(IntegrationEventPublisher).publish([new OrderCreatedIntegrationEvent('x'), new OrderCreatedIntegrationEvent('y')], { standalone: true });
    await eventually(async () => expect(await ns.queueDepth(dlq())).toBe(2));
    expect(await deadLetters.purge(dlq(), { all: true })).toEqual({ purged: 2, missing: [] });
    expect(await ns.queueDepth(dlq())).toBe(0);
  });
});
