import { randomUUID } from 'node:crypto';
import { DataSource, QueryRunnerAlreadyReleasedError } from 'typeorm';
import { createInboxMigration, createOutboxMigration } from 'nestjs-integration-events';
import { OutboxTableName } from '../libs/integration-events/src/outbox/outbox-table-name';
import type { OutboxStore } from '../libs/integration-events/src/outbox/outbox.store';
import { PostgresOutboxStore } from '../libs/integration-events/src/outbox/postgres-outbox.store';
import { PostgresStatements } from '../libs/integration-events/src/outbox/postgres-statements';
import { SqliteConnection } from '../libs/integration-events/src/outbox/sqlite-connection';
import { SqliteOutboxStore } from '../libs/integration-events/src/outbox/sqlite-outbox.store';
import { type InboxStore, PostgresInboxStore, SqliteInboxStore } from '../libs/integration-events/src/inbox/inbox.store';
import { eventually } from './support/eventually';
import { TEST_DATABASE_URL } from './support/services';
import { TestNamespace } from './support/test-namespace';

/** What the contract needs from each database, beside the stores themselves. */
interface StoreFixture {
  readonly outbox: OutboxStore;
  readonly inbox: InboxStore;
  readonly dataSource: DataSource;
  /** The outbox table's name, qualified. */
  readonly outboxTable: string;
  /** Inserts pending rows, as `publish()` would have committed them. */
  insertPending(count: number): Promise<string[]>;
  rows(): Promise<Array<{ id: string; status: string; attempts: number; last_error: string | null }>>;
  /** Lets every lease run out (as if time passed). */
  expireLeases(): Promise<void>;
  /** Makes rows waiting for a retry due now. */
  makeDue(): Promise<void>;
  /** Backdates sent rows and inbox rows by `ms`. */
  age(ms: number): Promise<void>;
  truncate(): Promise<void>;
  close(): Promise<void>;
}

async function postgresFixture(prepared = true): Promise<StoreFixture> {
  const ns = await TestNamespace.create();
  const dataSource = new DataSource({ type: 'postgres', url: TEST_DATABASE_URL });
  await dataSource.initialize();
  const table = new OutboxTableName(ns.schema, 'integration_events_outbox');
  const inboxTable = new OutboxTableName(ns.schema, 'integration_events_inbox');
  const statements = new PostgresStatements(dataSource, prepared);
  const outbox = new PostgresOutboxStore(dataSource, table, statements);
  return {
    outbox,
    inbox: new PostgresInboxStore(dataSource, inboxTable, statements),
    dataSource,
    outboxTable: table.qualified,
    insertPending: (count) => insertThrough(dataSource, outbox, count),
    rows: () => dataSource.query(`SELECT id, status, attempts, last_error FROM ${table.qualified} ORDER BY seq`),
    expireLeases: () => dataSource.query(`UPDATE ${table.qualified} SET locked_until = now() - interval '1 second'`),
    makeDue: () => dataSource.query(`UPDATE ${table.qualified} SET available_at = now()`),
    age: async (ms) => {
      await dataSource.query(`UPDATE ${table.qualified} SET sent_at = sent_at - $1 * interval '1 millisecond'`, [ms]);
      await dataSource.query(`UPDATE ${inboxTable.qualified} SET handled_at = handled_at - $1 * interval '1 millisecond'`, [ms]);
    },
    truncate: async () => {
      await dataSource.query(`TRUNCATE ${table.qualified}, ${inboxTable.qualified}`);
    },
    close: async () => {
      await dataSource.destroy();
      await ns.cleanup();
    },
  };
}

async function sqliteFixture(): Promise<StoreFixture> {
  const dataSource = new DataSource({ type: 'better-sqlite3', database: ':memory:' });
  await dataSource.initialize();
  const queryRunner = dataSource.createQueryRunner();
  for (const Migration of [createOutboxMigration(), createInboxMigration()]) await new Migration().up(queryRunner);
  await queryRunner.release();
  const table = new OutboxTableName(undefined, 'integration_events_outbox');
  const inboxTable = new OutboxTableName(undefined, 'integration_events_inbox');
  const outbox = new SqliteOutboxStore(dataSource, table);
  return {
    outbox,
    inbox: new SqliteInboxStore(dataSource, inboxTable),
    dataSource,
    outboxTable: table.qualified,
    insertPending: (count) => insertThrough(dataSource, outbox, count),
    rows: () => dataSource.query(`SELECT id, status, attempts, last_error FROM ${table.qualified} ORDER BY seq`),
    expireLeases: () => dataSource.query(`UPDATE ${table.qualified} SET locked_until = ?`, [Date.now() - 1_000]),
    makeDue: () => dataSource.query(`UPDATE ${table.qualified} SET available_at = ?`, [Date.now()]),
    age: async (ms) => {
      await dataSource.query(`UPDATE ${table.qualified} SET sent_at = sent_at - ?`, [ms]);
      await dataSource.query(`UPDATE ${inboxTable.qualified} SET handled_at = handled_at - ?`, [ms]);
    },
    truncate: async () => {
      await dataSource.query(`DELETE FROM ${table.qualified}`);
      await dataSource.query(`DELETE FROM ${inboxTable.qualified}`);
    },
    close: () => dataSource.destroy(),
  };
}

/** Inserts through the store itself, in a transaction, as `publish()` does. */
async function insertThrough(dataSource: DataSource, store: OutboxStore, count: number): Promise<string[]> {
  const ids = Array.from({ length: count }, () => randomUUID());
  await dataSource.transaction((manager) =>
    store.insert(
      manager,
      ids.map((id) => ({
        id,
        eventName: 'contract.tested',
        eventVersion: 1,
        payload: '{"ok":true}',
        headers: { 'ie-event-name': 'contract.tested', 'ie-event-version': 1 },
        occurredAt: new Date('2026-11-26T06:00:00.000Z'),
      })),
    ),
  );
  return ids;
}

/**
 * One contract, run against every store: PostgreSQL (with and without prepared statements) and SQLite
 * claim, lease and clean up alike.
 */
describe.each([
  ['PostgreSQL', () => postgresFixture(true)],
  ['PostgreSQL, preparedStatements: false', () => postgresFixture(false)],
  ['SQLite', sqliteFixture],
])('outbox and inbox store contract: %s', (_name, createFixture) => {
  let store: StoreFixture;

  beforeAll(async () => {
    store = await createFixture();
  });

  afterAll(async () => {
    await store?.close();
  });

  beforeEach(async () => {
    await store.truncate();
  });

  const statusOf = async (id: string) => (await store.rows()).find((row) => row.id === id);

  it('writes rows in the caller\'s transaction: a rollback leaves none', async () => {
    await expect(
      store.dataSource.transaction(async (manager) => {
        await store.outbox.insert(manager, [
          { id: randomUUID(), eventName: 'x', eventVersion: 1, payload: '{}', headers: {}, occurredAt: new Date() },
        ]);
        throw new Error('rollback');
      }),
    ).rejects.toThrow('rollback');
    expect(await store.rows()).toHaveLength(0);
  });

  it('writes thousands of rows from one call, in a transaction or on their own, and on their own all or none', async () => {
    // 7,000 rows: more than one SQLite statement can carry (32,766 parameters, 10 a row).
    const record = (id: string) => ({ id, eventName: 'x', eventVersion: 1, payload: '{}', headers: {}, occurredAt: new Date() });
    const many = (count: number) => Array.from({ length: count }, () => record(randomUUID()));
    await store.dataSource.transaction((manager) => store.outbox.insert(manager, many(7_000)));
    expect(await store.rows()).toHaveLength(7_000);
    await store.outbox.insert(store.dataSource.manager, many(7_000));
    expect(await store.rows()).toHaveLength(14_000);
    // On their own, a failure in the last rows (a duplicate id) leaves none of the call's rows.
    const failing = many(7_000);
    failing[6_999] = record(failing[0]!.id);
    await expect(store.outbox.insert(store.dataSource.manager, failing)).rejects.toThrow();
    expect(await store.rows()).toHaveLength(14_000);
  });

  it('releases and marks any number of ids in one call, more than SQLite takes parameters', async () => {
    // A shutdown releases up to ten batches' worth of handed-over rows at once (10 × 10,000 at most).
    const ids = await store.insertPending(33_000);
    const token = randomUUID();
    expect(await store.outbox.claim(33_000, 60_000, token)).toHaveLength(33_000);
    await store.outbox.release(ids, token);
    const again = randomUUID();
    expect(await store.outbox.claim(33_000, 60_000, again)).toHaveLength(33_000);
    await store.outbox.markUnroutable(ids.slice(0, 30_000), 'no queue bound', again);
    await store.outbox.markSent(ids, again);
    const counts = new Map<string, number>();
    for (const row of await store.rows()) counts.set(row.status, (counts.get(row.status) ?? 0) + 1);
    expect(Object.fromEntries(counts)).toEqual({ unroutable: 30_000, sent: 3_000 });
  });

  it('claims due rows oldest first with their contents, and never the same row twice while its lease runs', async () => {
    const ids = await store.insertPending(5);
    const first = await store.outbox.claim(3, 60_000, randomUUID());
    const second = await store.outbox.claim(3, 60_000, randomUUID());
    expect(first.map((row) => row.id)).toEqual(ids.slice(0, 3));
    expect(second.map((row) => row.id)).toEqual(ids.slice(3));
    expect(first[0]).toMatchObject({
      eventName: 'contract.tested',
      eventVersion: 1,
      payload: '{"ok":true}',
      headers: { 'ie-event-name': 'contract.tested', 'ie-event-version': 1 },
      attempts: 0,
    });
    expect(first[0]!.occurredAt.toISOString()).toBe('2026-11-26T06:00:00.000Z');
    expect(await store.outbox.claim(3, 60_000, randomUUID())).toHaveLength(0);
  });

  it('ignores the marks of a relay whose lease ran out and was taken over', async () => {
    const [id] = await store.insertPending(1);
    const stale = randomUUID();
    await store.outbox.claim(1, 60_000, stale);
    await store.expireLeases();
    const current = randomUUID();
    expect((await store.outbox.claim(1, 60_000, current)).map((row) => row.id)).toEqual([id]);

    await store.outbox.markUnroutable([id!], 'late return', stale);
    await store.outbox.markFailed([{ id: id!, error: 'late nack', retryInMs: 0 }], stale);
    await store.outbox.release([id!], stale);
    expect(await statusOf(id!)).toMatchObject({ status: 'pending', attempts: 0, last_error: null });

    await store.outbox.markSent([id!], current);
    expect(await statusOf(id!)).toMatchObject({ status: 'sent' });
    await store.outbox.markFailed([{ id: id!, error: 'late nack', retryInMs: 0 }], stale);
    expect(await statusOf(id!)).toMatchObject({ status: 'sent', attempts: 0, last_error: null });
  });

  it('records a failed attempt and holds the row back for its retry delay', async () => {
    const [id] = await store.insertPending(1);
    const token = randomUUID();
    await store.outbox.claim(1, 60_000, token);
    await store.outbox.markFailed([{ id: id!, error: 'nacked', retryInMs: 60_000 }], token);
    expect(await statusOf(id!)).toMatchObject({ status: 'pending', attempts: 1, last_error: 'nacked' });
    expect(await store.outbox.claim(1, 60_000, randomUUID())).toHaveLength(0);
    await store.makeDue();
    expect((await store.outbox.claim(1, 60_000, randomUUID())).map((row) => [row.id, row.attempts])).toEqual([[id, 1]]);
  });

  it('counts the pending rows that failed at least so many times, with the last error of the one that failed most', async () => {
    const [once, thrice, sentAfterFailing] = await store.insertPending(3);
    const fail = async (id: string, error: string) => {
      await store.makeDue();
      const token = randomUUID();
      await store.outbox.claim(3, 60_000, token);
      await store.outbox.markFailed([{ id, error, retryInMs: 0 }], token);
      await store.outbox.release([once!, thrice!, sentAfterFailing!], token);
    };
    await fail(once!, 'nacked once');
    for (const n of [1, 2, 3]) await fail(thrice!, `nacked ${n}`);
    for (const n of [1, 2, 3, 4]) await fail(sentAfterFailing!, `nacked ${n}`);
    const token = randomUUID();
    await store.outbox.claim(3, 60_000, token);
    await store.outbox.markSent([sentAfterFailing!], token);

    expect(await store.outbox.failing(1)).toEqual({ rows: 2, lastError: 'nacked 3' });
    expect(await store.outbox.failing(3)).toEqual({ rows: 1, lastError: 'nacked 3' });
    expect(await store.outbox.failing(4)).toEqual({ rows: 0, lastError: null });
  });

  it('holds a delayed row back until it is due', async () => {
    await store.dataSource.transaction((manager) =>
      store.outbox.insert(manager, [
        { id: randomUUID(), eventName: 'x', eventVersion: 1, payload: '{}', headers: {}, occurredAt: new Date(), availableAt: new Date(Date.now() + 60_000) },
      ]),
    );
    expect(await store.outbox.claim(5, 60_000, randomUUID())).toHaveLength(0);
    await store.makeDue();
    expect(await store.outbox.claim(5, 60_000, randomUUID())).toHaveLength(1);
  });

  it('writes rows already leased to the handoff token: no claim takes them until released or expired, marks under the token work', async () => {
    const lease = { token: randomUUID(), leaseMs: 60_000 };
    const record = (id: string) => ({ id, eventName: 'x', eventVersion: 1, payload: '{}', headers: {}, occurredAt: new Date() });
    const [one, two, three, four] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    await store.dataSource.transaction((manager) => store.outbox.insert(manager, [record(one)], lease));
    await store.dataSource.transaction((manager) => store.outbox.insert(manager, [record(two), record(three), record(four)], lease));
    expect(await store.outbox.claim(10, 60_000, randomUUID())).toHaveLength(0);

    await store.outbox.markSent([one, two], lease.token);
    expect(await statusOf(one)).toMatchObject({ status: 'sent' });
    expect(await statusOf(two)).toMatchObject({ status: 'sent' });
    await store.outbox.release([three], lease.token);
    expect((await store.outbox.claim(10, 60_000, randomUUID())).map((row) => row.id)).toEqual([three]);
    await store.expireLeases();
    expect((await store.outbox.claim(10, 60_000, randomUUID())).map((row) => row.id).sort()).toEqual([three, four].sort());
  });

  it('flags unroutable rows and hands released ones straight back', async () => {
    const [unroutable, released] = await store.insertPending(2);
    const token = randomUUID();
    await store.outbox.claim(2, 60_000, token);
    await store.outbox.markUnroutable([unroutable!], '312 NO_ROUTE', token);
    await store.outbox.release([released!], token);
    expect(await statusOf(unroutable!)).toMatchObject({ status: 'unroutable', last_error: '312 NO_ROUTE' });
    expect((await store.outbox.claim(5, 60_000, randomUUID())).map((row) => row.id)).toEqual([released]);
  });

  it('deletes sent rows past their retention, in batches, and nothing else', async () => {
    const ids = await store.insertPending(6);
    const token = randomUUID();
    await store.outbox.claim(6, 60_000, token);
    await store.outbox.markSent(ids.slice(0, 5), token);
    await store.age(120_000);
    expect(await store.outbox.deleteSent(60_000, 2)).toBe(2);
    expect(await store.outbox.deleteSent(60_000, 10)).toBe(3);
    expect(await store.outbox.deleteSent(60_000, 10)).toBe(0);
    expect((await store.rows()).map((row) => row.id)).toEqual([ids[5]]);
  });

  it('records a handled message once per handler, in the caller\'s transaction, and forgets old ones', async () => {
    expect(await store.dataSource.transaction((m) => store.inbox.record(m, 'queue-a', 'm-1'))).toBe(true);
    expect(await store.dataSource.transaction((m) => store.inbox.record(m, 'queue-a', 'm-1'))).toBe(false);
    expect(await store.dataSource.transaction((m) => store.inbox.record(m, 'queue-b', 'm-1'))).toBe(true);
    await expect(
      store.dataSource.transaction(async (m) => {
        await store.inbox.record(m, 'queue-a', 'm-2');
        throw new Error('handler failed');
      }),
    ).rejects.toThrow('handler failed');
    expect(await store.dataSource.transaction((m) => store.inbox.record(m, 'queue-a', 'm-2'))).toBe(true);
    await store.age(120_000);
    expect(await store.inbox.deleteOlderThan(60_000, 100)).toBe(3);
  });
});

describe('SQLite outbox store', () => {
  it('keeps none of a large insert that failed in the caller\'s transaction, though the caller commits', async () => {
    // SQLite does not abort a transaction on a failed statement: without a savepoint, the statements of
    // the insert that ran before the failing one would commit with the caller's other work.
    const fixture = await sqliteFixture();
    try {
      const record = (id: string) => ({ id, eventName: 'x', eventVersion: 1, payload: '{}', headers: {}, occurredAt: new Date() });
      const failing = Array.from({ length: 7_000 }, () => record(randomUUID()));
      failing[6_999] = record(failing[0]!.id); // the third statement fails on a duplicate id
      const kept = record(randomUUID());
      await fixture.dataSource.transaction(async (manager) => {
        await expect(fixture.outbox.insert(manager, failing)).rejects.toThrow();
        await fixture.outbox.insert(manager, [kept]);
      });
      expect((await fixture.rows()).map((row) => row.id)).toEqual([kept.id]);
    } finally {
      await fixture.close();
    }
  });
});

describe('SQLite relay statements, once a transaction they waited for ends', () => {
  let fixture: StoreFixture;
  let queryRunner: ReturnType<DataSource['createQueryRunner']>;
  const real = Date.now.bind(Date);
  /** How far the clock has moved on from the real one. */
  let offset = 0;

  beforeEach(async () => {
    fixture = await sqliteFixture();
    queryRunner = fixture.dataSource.createQueryRunner();
    offset = 0;
    jest.spyOn(Date, 'now').mockImplementation(() => real() + offset);
  });

  afterEach(async () => {
    jest.restoreAllMocks();
    await queryRunner.release();
    await fixture.close();
  });

  /** Runs `work` while a transaction is open (it waits for the commit); the clock moves on by `laterMs` meanwhile, and stays there. */
  const afterATransaction = async <T>(laterMs: number, work: () => Promise<T>): Promise<T> => {
    offset = 0;
    await queryRunner.startTransaction();
    const result = work();
    offset = laterMs;
    await queryRunner.commitTransaction();
    return result;
  };

  it('dates a claim\'s lease from when it runs, not from before it waited for an application\'s transaction to end', async () => {
    const [id] = await fixture.insertPending(1);
    const leaseMs = 1_000;
    // The claim waits for the transaction to end; meanwhile ten leases' worth of time passes.
    const claimed = await afterATransaction(10 * leaseMs, () => fixture.outbox.claim(10, leaseMs, randomUUID()));
    expect(claimed.map((row) => row.id)).toEqual([id]);
    // Its lease runs from then: no other claim takes the row while it does.
    expect(await fixture.outbox.claim(10, leaseMs, randomUUID())).toEqual([]);
  });

  it('read the time for a mark, a cleanup and the backlog when they run', async () => {
    const row = async (id: string) =>
      ((await fixture.dataSource.query('SELECT sent_at, available_at FROM integration_events_outbox WHERE id = ?', [id])) as Array<{ sent_at: number; available_at: number }>)[0]!;
    const [sent, failed] = await fixture.insertPending(2);
    const token = randomUUID();
    expect(await fixture.outbox.claim(10, 600_000, token)).toHaveLength(2);
    await afterATransaction(60_000, () => fixture.outbox.markSent([sent!], token));
    expect((await row(sent!)).sent_at).toBeGreaterThanOrEqual(real() + 50_000);
    await afterATransaction(60_000, () => fixture.outbox.markFailed([{ id: failed!, error: 'refused', retryInMs: 1_000 }], token));
    expect((await row(failed!)).available_at).toBeGreaterThanOrEqual(real() + 50_000);
    // Due a minute before the backlog is read.
    const backlog = await afterATransaction(121_000, () => fixture.outbox.backlog());
    expect(backlog.pending).toBe(1);
    expect(backlog.lagMs).toBeGreaterThanOrEqual(50_000);
    // Sent a minute after the clock's start: past 100 s of retention only by the time the cleanup runs.
    expect(await afterATransaction(200_000, () => fixture.outbox.deleteSent(100_000, 100))).toBe(1);
    offset = 0;
    await fixture.dataSource.transaction((manager) => fixture.inbox.record(manager, 'queue-a', 'm-1'));
    expect(await afterATransaction(200_000, () => fixture.inbox.deleteOlderThan(100_000, 100))).toBe(1);
  });
});

describe('SQLite statements', () => {
  it('keeps at most 100 prepared, however many row counts standalone publishes have had', async () => {
    const fixture = await sqliteFixture();
    try {
      const connection = new SqliteConnection(fixture.dataSource);
      const outbox = new SqliteOutboxStore(fixture.dataSource, new OutboxTableName(undefined, 'integration_events_outbox'), connection);
      const record = () => ({ id: randomUUID(), eventName: 'x', eventVersion: 1, payload: '{}', headers: {}, occurredAt: new Date() });
      // Standalone (no transaction): one INSERT text per row count.
      for (let rows = 1; rows <= 150; rows++) await outbox.insert(fixture.dataSource.manager, Array.from({ length: rows }, record));
      const database = (fixture.dataSource.driver as unknown as { databaseConnection: object }).databaseConnection;
      const cached = (connection as unknown as { statements: WeakMap<object, Map<string, unknown>> }).statements.get(database);
      expect(cached?.size).toBe(100);
      expect(await fixture.rows()).toHaveLength((150 * 151) / 2);
    } finally {
      await fixture.close();
    }
  });
});

describe('PostgreSQL relay claim, once a lock it waited for is released', () => {
  it('dates its lease from when it runs, not from when it arrived and waited (a migration\'s lock on the table)', async () => {
    const fixture = await postgresFixture(true);
    const locker = fixture.dataSource.createQueryRunner();
    try {
      const [id] = await fixture.insertPending(1);
      const leaseMs = 60_000;
      await locker.connect();
      await locker.startTransaction();
      await locker.query(`LOCK TABLE ${fixture.outboxTable} IN EXCLUSIVE MODE`);
      const claim = fixture.outbox.claim(10, leaseMs, randomUUID());
      const waiting = async () =>
        ((await locker.query(`SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = '${fixture.outboxTable}'::regclass`)) as Array<{ n: number }>)[0]!.n;
      await eventually(async () => expect(await waiting()).toBeGreaterThan(0));
      // The lock is let go after the claim arrived (it was seen waiting): at this time, to the microsecond.
      const [{ released }] = (await locker.query('SELECT clock_timestamp()::text AS released')) as Array<{ released: string }>;
      await locker.commitTransaction();
      expect((await claim).map((row) => row.id)).toEqual([id]);
      const [{ leaseLeftMs }] = (await fixture.dataSource.query(
        `SELECT extract(epoch FROM locked_until - $1::timestamptz) * 1000 AS "leaseLeftMs" FROM ${fixture.outboxTable} WHERE id = $2`,
        [released, id],
      )) as Array<{ leaseLeftMs: string }>;
      // Dated from its arrival, the lease would have run for the wait already, and another claim take the row sooner.
      expect(Number(leaseLeftMs)).toBeGreaterThanOrEqual(leaseMs);
    } finally {
      await locker.release();
      await fixture.close();
    }
  });
});

describe('PostgreSQL prepared statements', () => {
  it('never runs on the connection of a query runner TypeORM has released (its connection failed)', async () => {
    const fixture = await postgresFixture(true);
    const queryRunner = fixture.dataSource.createQueryRunner();
    try {
      await queryRunner.startTransaction();
      // What TypeORM does when the connection raises an error: the runner is released (its client goes
      // back to the pool with the error), while the transaction still looks active.
      await (queryRunner as unknown as { releasePostgresConnection(error: Error): Promise<void> }).releasePostgresConnection(
        new Error('terminating connection due to administrator command'),
      );
      expect(queryRunner.isTransactionActive).toBe(true);
      const before = (await fixture.rows()).length;
      await expect(
        fixture.outbox.insert(queryRunner.manager, [{ id: randomUUID(), eventName: 'x', eventVersion: 1, payload: '{}', headers: {}, occurredAt: new Date() }]),
      ).rejects.toBeInstanceOf(QueryRunnerAlreadyReleasedError);
      expect((await fixture.rows()).length).toBe(before);
    } finally {
      await fixture.close();
    }
  });


  it('prepares a statement afresh when a column it returns changed type, or the server dropped it, instead of failing for ever', async () => {
    const fixture = await postgresFixture(true);
    const table = `${(fixture.outbox as unknown as { claimSql: string }).claimSql.match(/^UPDATE (\S+)/)![1]}`;
    try {
      // One connection in the pool: every claim runs on the connection that prepared it.
      await fixture.dataSource.destroy();
      Object.assign(fixture.dataSource.options, { extra: { max: 1 } });
      await fixture.dataSource.initialize();
      await fixture.insertPending(3);
      expect(await fixture.outbox.claim(1, 60_000, randomUUID())).toHaveLength(1);
      // A migration widens a column the claim returns: the prepared plan's result type no longer fits.
      await fixture.dataSource.query(`ALTER TABLE ${table} ALTER COLUMN event_name TYPE varchar(300)`);
      expect(await fixture.outbox.claim(1, 60_000, randomUUID())).toHaveLength(1);
      // A pooler's reset (DISCARD ALL) drops every prepared statement of the connection.
      await fixture.dataSource.query('DISCARD ALL');
      expect(await fixture.outbox.claim(1, 60_000, randomUUID())).toHaveLength(1);
      // The same through a query runner's manager outside a transaction (autocommit: run again at once).
      const queryRunner = fixture.dataSource.createQueryRunner();
      try {
        const row = () => [{ id: randomUUID(), eventName: 'x', eventVersion: 1, payload: '{}', headers: {}, occurredAt: new Date() }];
        await fixture.outbox.insert(queryRunner.manager, row());
        await queryRunner.query('DISCARD ALL');
        await fixture.outbox.insert(queryRunner.manager, row());
      } finally {
        await queryRunner.release();
      }
      expect(await fixture.rows()).toHaveLength(5);
    } finally {
      await fixture.close();
    }
  });

  it.each([
    [true, 1],
    [false, 0],
  ])('with preparedStatements: %s, the outbox insert leaves %i named statement(s) on its connection', async (prepared, expected) => {
    const fixture = await postgresFixture(prepared);
    try {
      const names = await fixture.dataSource.transaction(async (manager) => {
        await fixture.outbox.insert(manager, [{ id: randomUUID(), eventName: 'x', eventVersion: 1, payload: '{}', headers: {}, occurredAt: new Date() }]);
        return (await manager.query("SELECT name FROM pg_prepared_statements WHERE name LIKE 'nestjs_ie_%'")) as Array<{ name: string }>;
      });
      expect(names).toHaveLength(expected);
    } finally {
      await fixture.close();
    }
  });
});
