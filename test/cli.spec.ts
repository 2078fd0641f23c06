import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { TestingModule } from '@nestjs/testing';
import { DeadLetterService, IntegrationEvent, IntegrationEventPublisher, NonRetryableError, OutboxAdminService } from 'nestjs-integration-events';
import { OrderCreatedIntegrationEvent, OrderCreatedRecorder } from './fixtures/order-events';
import { REPO_ROOT } from './support/child-service';
import { eventually } from './support/eventually';
import { TEST_DATABASE_URL, TEST_RABBITMQ_URL } from './support/services';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

const CLI = path.join(REPO_ROOT, 'libs/integration-events/dist/cli/main.js');

@IntegrationEvent({ name: 'nobody.cares', version: 1 })
class NobodyCaresEvent {
  constructor(readonly n: number) {}
}

@IntegrationEvent({ name: 'nobody.listens', version: 1 })
class NobodyListensEvent {
  constructor(readonly n: number) {}
}

@IntegrationEvent({ name: 'nobody.hears', version: 1 })
class NobodyHearsEvent {
  constructor(readonly n: number) {}
}

/** The operators' command line, as built (`npm run build`), against the real services. */
describe('command line: nestjs-integration-events dlq | outbox', () => {
  let ns: TestNamespace;
  let app: TestingModule;
  const dlq = () => `${ns.serviceName}.OrderCreatedRecorder.dlq`;

  const cli = (...args: string[]) => cliWith({}, ...args);
  async function cliWith(env: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], {
        env: { ...process.env, RABBITMQ_URL: TEST_RABBITMQ_URL, DATABASE_URL: TEST_DATABASE_URL, ...env },
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const { code, stdout, stderr } = error as { code: number; stdout: string; stderr: string };
      return { code, stdout, stderr };
    }
  }
  const json = async (...args: string[]) => {
    const result = await cli(...args, '--json');
    expect(result).toMatchObject({ code: 0, stderr: '' });
    return JSON.parse(result.stdout);
  };

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
    ns = await TestNamespace.create();
    app = await startTestApp(ns, { providers: [OrderCreatedRecorder] });
  });

  // One app and outbox for the file: each test starts with no outbox row and no dead letter, whatever
  // ran before (`--all-*` and `list` would act on another test's rows).
  beforeEach(async () => {
    await (await ns.sql()).query(`DELETE FROM ${ns.outboxTable}`);
    await ns.drainQueue(dlq());
  });

  afterAll(async () => {
    await app?.close();
    await ns?.cleanup();
  });

  it('lists, shows, requeues and purges dead letters', async () => {
    const recorder = app.get(OrderCreatedRecorder);
    recorder.behaviour = () => {
      throw new NonRetryableError('not today');
    };
    const ids = await app
      .get(IntegrationEventPublisher)
      .publish([1, 2, 3].map((n) => new OrderCreatedIntegrationEvent(`cli-${n}`)), { standalone: true });
    await eventually(async () => expect(await ns.queueDepth(dlq())).toBe(3));

    const listed = await json('dlq', 'list', dlq());
    expect(listed.total).toBe(3);
    expect(listed.messages.map((m: { messageId: string }) => m.messageId).sort()).toEqual([...ids].sort());
    const text = await cli('dlq', 'list', dlq());
    expect(text.stdout).toContain(`${dlq()}: 3 dead letter(s)`);
    expect(text.stdout).toContain('non-retryable after 1 attempt(s)');

    const shown = await json('dlq', 'show', dlq(), ids[1]!);
    expect(JSON.parse(shown.body)).toMatchObject({ orderId: 'cli-2' });

    recorder.behaviour = () => undefined;
    recorder.received.length = 0;
    expect(await json('dlq', 'requeue', dlq(), ids[0]!)).toEqual({ requeued: [ids[0]], missing: [], withoutConsumers: [] });
    await eventually(() => expect(recorder.received.map((r) => [r.context.messageId, r.context.attempt])).toEqual([[ids[0], 1]]));

    // A dead letter without a message id (another publisher's poison) is shown by the empty id.
    const channel = await (await ns.amqp()).createConfirmChannel();
    try {
      channel.sendToQueue(dlq(), Buffer.from('no id here'), {});
      await channel.waitForConfirms();
    } finally {
      await channel.close();
    }
    expect(await json('dlq', 'show', dlq(), '')).toMatchObject({ body: 'no id here' });

    expect(await json('dlq', 'purge', dlq(), '--all')).toEqual({ purged: 3, missing: [] });
    expect(await ns.queueDepth(dlq())).toBe(0);
  });

  it('says what a requeue did before it stopped, and warns of a target queue without consumer', async () => {
    const dead = ns.trackQueue(`${ns.serviceName}.cli-partial.dlq`);
    const idle = ns.trackQueue(`${ns.serviceName}.cli-idle`);
    const gone = `${ns.serviceName}.cli-gone`;
    const channel = await (await ns.amqp()).createConfirmChannel();
    try {
      await channel.assertQueue(dead, { durable: true });
      await channel.assertQueue(idle, { durable: true });
      channel.sendToQueue(dead, Buffer.from('{}'), { messageId: 'to-idle', headers: { 'ie-queue': idle } });
      channel.sendToQueue(dead, Buffer.from('{}'), { messageId: 'to-nowhere', headers: { 'ie-queue': gone } });
      channel.sendToQueue(dead, Buffer.from('{}'), { messageId: 'to-idle-later', headers: { 'ie-queue': idle } });
      await channel.waitForConfirms();
    } finally {
      await channel.close();
    }
    // Stopped at the dead letter whose queue is gone: the one before it went back, and is named.
    const partial = await cli('dlq', 'requeue', dead, '--all', '--json');
    expect(partial.code).toBe(1);
    expect(JSON.parse(partial.stdout)).toEqual({ error: expect.stringContaining(`Queue "${gone}" does not exist`), requeued: ['to-idle'] });
    const text = await cli('dlq', 'requeue', dead, 'to-idle-later');
    expect(text).toMatchObject({ code: 0, stderr: '' });
    expect(text.stdout).toContain(`Warning: ${idle} has no consumer`);
    expect(await ns.queueDepth(idle)).toBe(2);
    expect(await ns.queueDepth(dead)).toBe(1);
  });

  it('has OutboxAdminService refuse a filter, a limit or a selection of no kind it knows, and change nothing', async () => {
    const admin = app.get(OutboxAdminService);
    const [due] = await app
      .get(IntegrationEventPublisher)
      .publish(new NobodyHearsEvent(1), { standalone: true, deliverAt: new Date(Date.now() + 3_600_000) });
    try {
      await expect(admin.list('everything' as never)).rejects.toThrow('Unknown outbox filter "everything": one of pending, failed');
      await expect(admin.list('constructor' as never)).rejects.toThrow('Unknown outbox filter "constructor"');
      await expect(admin.list('stuck', 0)).rejects.toThrow('The limit of an outbox list must be a whole number from 1, not 0');
      await expect(admin.list('stuck', 2.5)).rejects.toThrow('not 2.5');
      // Skipping "all pending" would take every event due, a mistyped endpoint parameter away.
      await expect(admin.skip({ all: 'pending' } as never)).rejects.toThrow('{ all } with all one of unroutable, failed, stuck, not {"all":"pending"}');
      await expect(admin.retry({} as never)).rejects.toThrow('An outbox selection is { ids } or { all }');
      await expect(admin.skip({ ids: due } as never)).rejects.toThrow('The ids of an outbox selection must be an array of row ids');
      await expect(admin.retry({ ids: [due!, 'abc'] })).rejects.toThrow('"abc" is not an outbox row id (a UUID)');
      await expect(admin.skip({ ids: [due!, 7] } as never)).rejects.toThrow('7 is not an outbox row id (a UUID)');
      expect((await ns.outboxRows()).find((row) => row.id === due)?.status).toBe('pending');
      // A row id in any form PostgreSQL reads is taken.
      expect(await admin.skip({ ids: [due!.toUpperCase().replaceAll('-', '')] })).toEqual([due]);
    } finally {
      await (await ns.sql()).query(`DELETE FROM ${ns.outboxTable} WHERE id = $1`, [due]);
    }
  });

  /**
   * Inserts outbox rows in the given order (so in `seq` order), none of which this file's relay takes:
   * `failed` is pending with attempts and not due for an hour, `pending` not due for an hour.
   */
  async function insertOutboxRows(kinds: ReadonlyArray<'failed' | 'pending' | 'unroutable' | 'skipped' | 'sent'>): Promise<string[]> {
    const db = await ns.sql();
    const ids: string[] = [];
    for (const kind of kinds) {
      const { rows } = await db.query(
        `INSERT INTO ${ns.outboxTable} (id, event_name, event_version, payload, headers, occurred_at, available_at, status, attempts, last_error, sent_at)
         VALUES (gen_random_uuid(), 'cli.listed', 1, '{}', '{}'::jsonb, now(), now() + interval '1 hour',
                 $1::text, $2::int, $3::text, CASE WHEN $1::text = 'sent' THEN now() END)
         RETURNING id`,
        [kind === 'failed' ? 'pending' : kind, kind === 'failed' ? 3 : 0, kind === 'failed' ? 'nacked' : null],
      );
      ids.push((rows[0] as { id: string }).id);
    }
    return ids;
  }
  const idsOf = (listed: { rows: Array<{ id: string }> }) => listed.rows.map((row) => row.id);

  it('lists the rows of the --status asked, oldest first, no more than --limit', async () => {
    const [failed1, pending1, failed2, unroutable, sent, failed3, skipped, pending2] = await insertOutboxRows([
      'failed',
      'pending',
      'failed',
      'unroutable',
      'sent',
      'failed',
      'skipped',
      'pending',
    ]);
    const list = (...args: string[]) => json('outbox', 'list', '--schema', ns.schema, ...args);

    const two = await list('--status', 'failed', '--limit', '2');
    expect(two.rows.map((row: { id: string; status: string; attempts: number }) => [row.id, row.status, row.attempts])).toEqual([
      [failed1, 'pending', 3],
      [failed2, 'pending', 3],
    ]);
    // The counts are of the whole table, whatever is listed.
    expect(two.counts).toEqual({ pending: 5, failed: 3, unroutable: 1, skipped: 1, sent: 1 });
    expect(idsOf(await list('--status', 'failed'))).toEqual([failed1, failed2, failed3]);
    // Pending is every row not sent yet, those that failed included.
    expect(idsOf(await list('--status', 'pending'))).toEqual([failed1, pending1, failed2, failed3, pending2]);
    expect(idsOf(await list('--status', 'unroutable'))).toEqual([unroutable]);
    expect(idsOf(await list('--status', 'sent'))).toEqual([sent]);
    expect(idsOf(await list('--status', 'skipped'))).toEqual([skipped]);
    // Stuck (the default): failed or unroutable.
    expect(idsOf(await list())).toEqual([failed1, failed2, unroutable, failed3]);
    expect(idsOf(await list('--limit', '3'))).toEqual([failed1, failed2, unroutable]);

    const text = await cli('outbox', 'list', '--schema', ns.schema, '--status', 'skipped');
    expect(text).toMatchObject({ code: 0, stderr: '' });
    expect(text.stdout).toContain('Outbox: 5 pending (3 failed at least once), 1 unroutable, 1 skipped, 1 sent');
    expect(text.stdout).toContain(`  ${skipped}  cli.listed v1  skipped  0 attempt(s)`);
    expect(text.stdout).not.toContain(failed1);
    // A pending row due later (a scheduled event, or a failed one's backoff) says when.
    const pending = await cli('outbox', 'list', '--schema', ns.schema, '--status', 'pending');
    expect(pending.stdout).toMatch(new RegExp(`  ${pending1}  cli\\.listed v1  pending  0 attempt\\(s\\)  due \\d{4}-\\d\\d-\\d\\dT`));
    expect(pending.stdout).toMatch(new RegExp(`  ${failed1}  cli\\.listed v1  pending  3 attempt\\(s\\)  due \\S+  nacked`));
  });

  it('lists 50 stuck rows by default on the command line, 100 from OutboxAdminService', async () => {
    const kinds = Array.from({ length: 101 }, (_, i): 'unroutable' | 'failed' => (i % 3 === 0 ? 'unroutable' : 'failed'));
    const ids = await insertOutboxRows(kinds);
    // Not stuck: never listed by default, however many there are.
    await insertOutboxRows(['pending', 'sent']);

    const listed = await json('outbox', 'list', '--schema', ns.schema);
    expect(idsOf(listed)).toEqual(ids.slice(0, 50));
    expect(listed.counts).toMatchObject({ unroutable: 34, failed: 67 });
    expect((await app.get(OutboxAdminService).list()).map((row) => row.id)).toEqual(ids.slice(0, 100));
  });

  it('lists no more dead letters than --limit, 50 by default on the command line, 100 from DeadLetterService', async () => {
    const many = ns.trackQueue(`${ns.serviceName}.cli-many.dlq`);
    const ids = Array.from({ length: 101 }, (_, i) => `dead-${String(i).padStart(3, '0')}`);
    const channel = await (await ns.amqp()).createConfirmChannel();
    try {
      await channel.assertQueue(many, { durable: true });
      for (const id of ids) channel.sendToQueue(many, Buffer.from('{}'), { messageId: id });
      await channel.waitForConfirms();
    } finally {
      await channel.close();
    }
    const messageIds = (listed: { messages: Array<{ messageId: string }> }) => listed.messages.map((m) => m.messageId);

    const one = await json('dlq', 'list', many, '--limit', '1');
    expect({ total: one.total, ids: messageIds(one) }).toEqual({ total: 101, ids: [ids[0]] });
    const text = await cli('dlq', 'list', many, '--limit', '1');
    expect(text.stdout).toContain(`${many}: 101 dead letter(s), showing 1`);
    expect(text.stdout).toContain(`  ${ids[0]}  `);
    expect(text.stdout).not.toContain(ids[1]);

    const byDefault = await json('dlq', 'list', many);
    expect({ total: byDefault.total, ids: messageIds(byDefault) }).toEqual({ total: 101, ids: ids.slice(0, 50) });
    const fromService = await app.get(DeadLetterService).list(many);
    expect({ total: fromService.total, ids: fromService.messages.map((m) => m.messageId) }).toEqual({ total: 101, ids: ids.slice(0, 100) });
    // Listing took nothing out.
    expect(await ns.queueDepth(many)).toBe(101);
  });

  it('refuses to requeue through a connection whose frames are smaller than a dead letter\'s headers may need, and moves nothing', async () => {
    const dead = ns.trackQueue(`${ns.serviceName}.small-frames.dlq`);
    const channel = await (await ns.amqp()).createConfirmChannel();
    try {
      await channel.assertQueue(dead, { durable: true });
      channel.sendToQueue(dead, Buffer.from('{}'), { messageId: 'framed-1', headers: { 'ie-queue': `${ns.serviceName}.OrderCreatedRecorder` } });
      await channel.waitForConfirms();
    } finally {
      await channel.close();
    }
    const url = new URL(TEST_RABBITMQ_URL);
    url.searchParams.set('frameMax', '4096');
    const refused = await cli('dlq', 'requeue', dead, '--all', '--url', url.toString());
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('its frames are limited to 4096 bytes, and a dead letter\'s headers may need up to 131072');
    expect(await ns.queueDepth(dead)).toBe(1);
    // Reading needs no large frames.
    const listed = await cli('dlq', 'list', dead, '--json', '--url', url.toString());
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toMatchObject({ total: 1, messages: [{ messageId: 'framed-1' }] });
  });

  it('lists stuck outbox rows, retries and skips them', async () => {
    const publisher = app.get(IntegrationEventPublisher);
    const [unroutable] = await publisher.publish(new NobodyCaresEvent(1), { standalone: true });
    await eventually(async () => expect((await ns.outboxRows()).find((r) => r.id === unroutable)?.status).toBe('unroutable'));
    const [failing] = await publisher.publish(new NobodyCaresEvent(2), { standalone: true });
    await eventually(async () => expect((await ns.outboxRows()).find((r) => r.id === failing)?.status).toBe('unroutable'));
    // Make the second one look like a row whose publishes keep failing.
    await (await ns.sql()).query(
      `UPDATE ${ns.outboxTable} SET status = 'pending', attempts = 4, last_error = 'nacked', available_at = now() + interval '1 hour' WHERE id = $1`,
      [failing],
    );

    const listed = await json('outbox', 'list', '--schema', ns.schema);
    expect(listed.rows.map((r: { id: string; status: string }) => [r.id, r.status])).toEqual([
      [unroutable, 'unroutable'],
      [failing, 'pending'],
    ]);
    expect(listed.counts).toMatchObject({ unroutable: 1, failed: 1 });

    expect(await json('outbox', 'skip', failing!, '--schema', ns.schema)).toEqual({ skipped: [failing], leftAlone: [] });
    expect((await ns.outboxRows()).find((r) => r.id === failing)?.status).toBe('skipped');

    // Once a queue is bound for the event, retrying the unroutable row sends it.
    const probe = await ns.probe('nobody.cares');
    expect(await json('outbox', 'retry', '--all-unroutable', '--schema', ns.schema)).toEqual({ retried: [unroutable] });
    await eventually(() => expect(probe.messages.map((m) => m.properties.messageId)).toEqual([unroutable]));
    await eventually(async () => expect((await ns.outboxRows()).find((r) => r.id === unroutable)?.status).toBe('sent'));
  });

  it('says with --json what a retry of all rows changed before it stopped part-way, and exits 1', async () => {
    const [first, second] = await insertOutboxRows(['failed', 'failed']);
    const db = await ns.sql();
    // The first row refuses to change (a trigger of the test's): the first batch, and so the command, stops.
    await db.query(
      `CREATE FUNCTION "${ns.schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF OLD.id = '${first}' THEN RAISE EXCEPTION 'refused by the test'; END IF;
         RETURN NEW;
       END $$`,
    );
    await db.query(`CREATE TRIGGER refuse BEFORE UPDATE ON ${ns.outboxTable} FOR EACH ROW EXECUTE FUNCTION "${ns.schema}".refuse()`);
    try {
      const result = await cli('outbox', 'retry', '--all-failed', '--schema', ns.schema, '--json');
      expect(result).toMatchObject({ code: 1, stderr: '' });
      expect(JSON.parse(result.stdout)).toEqual({
        error: expect.stringMatching(/^Stopped after 0 of 2 row\(s\), which stay changed \(running it again takes the rest\): .*refused by the test/),
        retried: [],
      });
      const text = await cli('outbox', 'retry', '--all-failed', '--schema', ns.schema);
      expect(text).toMatchObject({ code: 1, stdout: '' });
      expect(text.stderr).toContain('Stopped after 0 of 2 row(s)');
    } finally {
      await db.query(`DROP TRIGGER refuse ON ${ns.outboxTable}`);
    }
    expect(await json('outbox', 'retry', '--all-failed', '--schema', ns.schema)).toEqual({ retried: [first, second] });
  });

  it('leaves a row alone while a relay is publishing it, so the relay\'s mark still lands', async () => {
    const [id] = await app.get(IntegrationEventPublisher).publish(new NobodyListensEvent(1), { standalone: true });
    await eventually(async () => expect((await ns.outboxRows()).find((r) => r.id === id)?.status).toBe('unroutable'));
    // As a relay holds a failed row it is sending again: pending, due, leased to it for a minute.
    const token = randomUUID();
    const db = await ns.sql();
    await db.query(
      `UPDATE ${ns.outboxTable} SET status = 'pending', attempts = 2, last_error = 'nacked', available_at = now(), ` +
        "locked_until = now() + interval '1 minute', lease_token = $2 WHERE id = $1",
      [id, token],
    );
    const leaseOf = async () =>
      (await db.query(`SELECT status, lease_token FROM ${ns.outboxTable} WHERE id = $1`, [id])).rows[0] as { status: string; lease_token: string | null };

    // A given id left alone fails the command (exit 1), as `dlq` does for ids it did not find: a script's
    // `outbox skip $ID || alert` must not take "nothing changed" for done.
    const leftAloneJson = async (...args: string[]) => {
      const result = await cli(...args, '--json');
      expect(result).toMatchObject({ code: 1, stderr: '' });
      return JSON.parse(result.stdout);
    };
    expect(await leftAloneJson('outbox', 'retry', id!, '--schema', ns.schema)).toEqual({ retried: [], leftAlone: [id] });
    expect(await json('outbox', 'retry', '--all-stuck', '--schema', ns.schema)).toEqual({ retried: [] });
    expect(await leftAloneJson('outbox', 'skip', id!, '--schema', ns.schema)).toEqual({ skipped: [], leftAlone: [id] });
    expect(await leaseOf()).toEqual({ status: 'pending', lease_token: token });
    const text = await cli('outbox', 'skip', id!, '--schema', ns.schema);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain(`Left alone 1 row(s) (already sent or skipped, being published by a relay right now, or not in the outbox):\n  ${id}`);

    // Once its lease has run out (the relay is gone), the row is the operator's again. (Not due for an
    // hour, so this test's own relay does not take it meanwhile.)
    await db.query(
      `UPDATE ${ns.outboxTable} SET locked_until = now() - interval '1 second', available_at = now() + interval '1 hour' WHERE id = $1`,
      [id],
    );
    // An id as an operator may paste it, in capitals, in braces, without hyphens (PostgreSQL takes every
    // form): the row is skipped, and not listed as left alone.
    expect(await json('outbox', 'skip', `{${id!.replace(/-/g, '').toUpperCase()}}`, '--schema', ns.schema)).toEqual({ skipped: [id], leftAlone: [] });
  });

  it('says how to use it, with exit code 2, when called wrongly', async () => {
    const result = await cli('dlq', 'requeue', 'some.dlq');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('give the message ids to act on, or --all');
    expect(result.stderr).toContain('Usage: nestjs-integration-events');
    expect((await cli('outbox', 'list', '--schema', 'x; drop table y')).code).toBe(2);
  });

  it('says a wrong argument is a usage mistake (exit code 2) even when the broker or database does not answer', async () => {
    const noBroker = ['--url', 'amqp://guest:guest@127.0.0.1:1'];
    const noDatabase = ['--database-url', 'postgres://postgres@127.0.0.1:1/postgres'];
    for (const [args, says] of [
      [['dlq', 'requeue', 'some.dlq', ...noBroker], 'give the message ids to act on, or --all'],
      [['dlq', 'purge', 'some.dlq', 'id-1', '--all', ...noBroker], 'give message ids or --all, not both'],
      [['dlq', 'list', 'some.dlq', '--limit', '0', ...noBroker], '--limit must be a whole number from 1'],
      [['dlq', 'show', 'some.dlq', ...noBroker], 'dlq show needs a message id'],
      [['outbox', 'list', '--status', 'bogus', ...noDatabase], '--status must be one of'],
      [['outbox', 'list', '--limit', 'x', ...noDatabase], '--limit must be a whole number from 1'],
      [['outbox', 'retry', ...noDatabase], 'give the row ids to act on'],
      [['outbox', 'skip', ...noDatabase], 'outbox skip needs row ids'],
      [['outbox', 'skip', 'not-a-uuid', ...noDatabase], '"not-a-uuid" is not an outbox row id (a UUID)'],
      [['outbox', 'retry', '0190a8c4-0000-7000-8000-00000000000', ...noDatabase], 'is not an outbox row id (a UUID)'],
      [['outbox', 'skip', '0-190a8c40000-7000-8000-000000000000', ...noDatabase], 'is not an outbox row id (a UUID)'],
      [['outbox', 'skip', '{0190a8c4-0000-7000-8000-000000000000', ...noDatabase], 'is not an outbox row id (a UUID)'],
      [['outbox', 'skip', '0190a8c4-0000-7000-8000-000000000000-', ...noDatabase], 'is not an outbox row id (a UUID)'],
      [['dlq', 'list', 'some.dlq', '--limit', '1e30', ...noBroker], '--limit must be a whole number from 1'],
      // An argument too many would be ignored: the default rows listed, a second id left alone.
      [['outbox', 'list', 'failed', ...noDatabase], 'outbox list takes no arguments (got "failed"); give the rows to list with --status'],
      [['dlq', 'list', 'some.dlq', '10', ...noBroker], 'dlq list takes one dead-letter queue (got "10" too); give how many to show with --limit'],
      [['dlq', 'show', 'some.dlq', 'id-1', 'id-2', ...noBroker], 'dlq show takes one message id (got "id-2" too)'],
      // An id that reads as a switch with a value, from a script that did not put it after --.
      [['dlq', 'purge', 'some.dlq', 'id-1', '--all=x', ...noBroker], '--all takes no value (given "x")'],
    ] as const) {
      const result = await cli(...args);
      expect({ args, code: result.code }).toEqual({ args, code: 2 });
      expect(result.stderr).toContain(says);
      expect(result.stderr).not.toContain('Cannot connect');
    }
  });

  it('says there is no outbox table where --schema and --table point, naming the options', async () => {
    const missing = await cli('outbox', 'list', '--schema', `${ns.schema}_elsewhere`);
    expect(missing).toMatchObject({ code: 1, stdout: '' });
    expect(missing.stderr).toContain(`There is no outbox table "${ns.schema}_elsewhere"."integration_events_outbox" in postgres://`);
    expect(missing.stderr).toContain("give the --schema and --table of the module's outbox options");
    expect((await cli('outbox', 'retry', '--all-failed', '--schema', ns.schema, '--table', 'orders')).stderr).toContain(
      `There is no outbox table "${ns.schema}"."orders"`,
    );
  });

  it('refuses an option the action does not take, before touching anything', async () => {
    // Unroutable: it stays in the outbox, and `retry --all-unroutable` would make it pending again.
    const [id] = await app.get(IntegrationEventPublisher).publish(new NobodyHearsEvent(1), { standalone: true });
    await eventually(async () => expect((await ns.outboxRows()).find((r) => r.id === id)?.status).toBe('unroutable'));
    const typo = await cli('outbox', 'retry', '--all-unroutable', '--shema', ns.schema);
    expect(typo).toMatchObject({ code: 2, stdout: '' });
    expect(typo.stderr).toContain('outbox retry does not take --shema');
    expect((await cli('outbox', 'skip', id!, '--all-stuck', '--schema', ns.schema)).stderr).toContain('outbox skip does not take --all-stuck');
    const limit = await cli('dlq', 'list', dlq(), '--limt', '5');
    expect(limit).toMatchObject({ code: 2, stdout: '' });
    expect(limit.stderr).toContain('dlq list does not take --limt');
    // Nothing was changed: the row is still unroutable.
    expect((await ns.outboxRows()).find((r) => r.id === id)?.status).toBe('unroutable');
  });

  it('refuses an empty URL (an unset variable in "--url $VAR") instead of connecting to localhost', async () => {
    const amqpUrl = await cli('dlq', 'purge', dlq(), '--all', '--url', '');
    expect(amqpUrl).toMatchObject({ code: 2, stdout: '' });
    expect(amqpUrl.stderr).toContain('--url is empty: give the URL');
    const databaseUrl = await cli('outbox', 'retry', '--all-stuck', '--schema', ns.schema, '--database-url=  ');
    expect(databaseUrl).toMatchObject({ code: 2, stdout: '' });
    expect(databaseUrl.stderr).toContain('--database-url is empty: give the URL');
    // DATABASE_URL="$PROD_DB" with the variable unset: not the default's localhost either.
    const variable = await cliWith({ RABBITMQ_URL: '' }, 'dlq', 'purge', dlq(), '--all');
    expect(variable).toMatchObject({ code: 2, stdout: '' });
    expect(variable.stderr).toContain('RABBITMQ_URL is set but empty');
  });

  it('never prints a database password given as a query parameter (libpq\'s ?password=)', async () => {
    const result = await cli('outbox', 'list', '--database-url', 'postgres://app@127.0.0.1:1/orders?password=s3cr3t&sslpassword=k3y');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Cannot connect to postgres://app@127.0.0.1:1/orders?password=***&sslpassword=***');
    expect(result.stderr).not.toMatch(/s3cr3t|k3y/);
  });

  it('escapes the control characters of arguments it echoes (ids a hostile publisher chose)', async () => {
    const usage = await cli('dlq', 'show', dlq(), 'm-1', 'evil\u001b[31m');
    expect(usage.code).toBe(2);
    expect(usage.stderr).not.toContain('\u001b');
    expect(usage.stderr).toContain('evil\\u001b[31m');
    const purge = await cli('dlq', 'purge', dlq(), '--', 'evil\u001b]0;title\u0007');
    expect(purge.code).toBe(1);
    expect(purge.stdout).not.toMatch(/[\u0007\u001b]/);
    expect(purge.stdout).toContain('Not found: evil\\u001b]0;title\\u0007');
  });

  it('never prints the password of a URL it cannot use', async () => {
    const result = await cli('dlq', 'list', 'x.dlq', '--url', 'amqp://guest:s3cr3t@127.0.0.1:1');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Cannot connect to amqp://guest:***@127.0.0.1:1');
    expect(result.stderr).not.toContain('s3cr3t');
  });
});
