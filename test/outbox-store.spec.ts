import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { OutboxTableName } from '../libs/integration-events/src/outbox/outbox-table-name';
import { PostgresOutboxStore } from '../libs/integration-events/src/outbox/postgres-outbox.store';
import { TEST_DATABASE_URL } from './support/services';
import { TestNamespace } from './support/test-namespace';

/** The store's claim and lease rules, on the real PostgreSQL. */
describe('PostgreSQL outbox store', () => {
  let ns: TestNamespace;
  let dataSource: DataSource;
  let store: PostgresOutboxStore;

  beforeAll(async () => {
    ns = await TestNamespace.create();
    dataSource = new DataSource({ type: 'postgres', url: TEST_DATABASE_URL });
    await dataSource.initialize();
    store = new PostgresOutboxStore(dataSource, new OutboxTableName(ns.schema, 'integration_events_outbox'));
  });

  afterAll(async () => {
    await dataSource?.destroy();
    await ns?.cleanup();
  });

  beforeEach(async () => {
    await (await ns.sql()).query(`TRUNCATE ${ns.outboxTable}`);
  });

  const expireLeases = async () => (await ns.sql()).query(`UPDATE ${ns.outboxTable} SET locked_until = now() - interval '1 second'`);
  const statusOf = async (id: string) => (await ns.outboxRows()).find((row) => row.id === id);

  it('claims due rows oldest first, and never the same row twice while its lease runs', async () => {
    await ns.insertOutboxRows(5);
    const first = await store.claim(3, 60_000, randomUUID());
    const second = await store.claim(3, 60_000, randomUUID());
    expect(first).toHaveLength(3);
    expect(second).toHaveLength(2);
    expect(new Set([...first, ...second].map((row) => row.id)).size).toBe(5);
    expect(await store.claim(3, 60_000, randomUUID())).toHaveLength(0);
  });

  it('ignores the marks of a relay whose lease ran out and was taken over', async () => {
    await ns.insertOutboxRows(1);
    const stale = randomUUID();
    const [row] = await store.claim(1, 60_000, stale);
    await expireLeases();
    const current = randomUUID();
    expect((await store.claim(1, 60_000, current)).map((r) => r.id)).toEqual([row!.id]);

    await store.markUnroutable([row!.id], 'late return', stale);
    await store.markFailed([{ id: row!.id, error: 'late nack', retryInMs: 0 }], stale);
    await store.release([row!.id], stale);
    expect(await statusOf(row!.id)).toMatchObject({ status: 'pending', attempts: 0, last_error: null });

    await store.markSent([row!.id], current);
    expect(await statusOf(row!.id)).toMatchObject({ status: 'sent' });
    // Nothing the stale relay says later can turn a sent row back.
    await store.markUnroutable([row!.id], 'late return', stale);
    await store.markFailed([{ id: row!.id, error: 'late nack', retryInMs: 0 }], stale);
    expect(await statusOf(row!.id)).toMatchObject({ status: 'sent', attempts: 0, last_error: null });
  });

  it('records a failed attempt and holds the row back for its retry delay', async () => {
    await ns.insertOutboxRows(1);
    const token = randomUUID();
    const [row] = await store.claim(1, 60_000, token);
    await store.markFailed([{ id: row!.id, error: 'nacked', retryInMs: 60_000 }], token);
    expect(await statusOf(row!.id)).toMatchObject({ status: 'pending', attempts: 1, last_error: 'nacked' });
    expect(await store.claim(1, 60_000, randomUUID())).toHaveLength(0);
    await (await ns.sql()).query(`UPDATE ${ns.outboxTable} SET available_at = now()`);
    expect((await store.claim(1, 60_000, randomUUID())).map((r) => ({ id: r.id, attempts: r.attempts }))).toEqual([
      { id: row!.id, attempts: 1 },
    ]);
  });

  it('hands released rows straight back', async () => {
    await ns.insertOutboxRows(2);
    const token = randomUUID();
    const rows = await store.claim(2, 60_000, token);
    await store.release(
      rows.map((r) => r.id),
      token,
    );
    expect(await store.claim(5, 60_000, randomUUID())).toHaveLength(2);
  });
});
