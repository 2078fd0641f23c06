import { DataSource } from 'typeorm';
import { OutboxChangeInterruptedError } from 'nestjs-integration-events';
import { OutboxOperations } from '../libs/integration-events/src/outbox/outbox.operations';
import { OutboxTableName } from '../libs/integration-events/src/outbox/outbox-table-name';
import { TEST_DATABASE_URL } from './support/services';
import { TestNamespace } from './support/test-namespace';

type Kind = 'failed' | 'pending' | 'unroutable' | 'skipped' | 'sent' | 'leased';

/**
 * The operators' retry and skip of `{ all }` go through a large table in batches (a statement each), so
 * that after an outage they never hold every stuck row's lock at once: each row is taken once, in the
 * table's order, and rows a relay leases meanwhile are left to it. No relay runs here.
 */
describe('outbox operations in batches', () => {
  let ns: TestNamespace;
  let dataSource: DataSource;

  beforeEach(async () => {
    ns = await TestNamespace.create();
    dataSource = await new DataSource({ type: 'postgres', url: TEST_DATABASE_URL, extra: { max: 2, allowExitOnIdle: true } }).initialize();
  });

  afterEach(async () => {
    await dataSource?.destroy();
    await ns?.cleanup();
  });

  const operations = (batchSize?: number) => new OutboxOperations(dataSource, new OutboxTableName(ns.schema, 'integration_events_outbox'), batchSize);

  /** Inserts rows of the given kinds, in this order (their seq); their ids. Failed and pending rows are due in an hour. */
  async function insert(kinds: readonly Kind[]): Promise<string[]> {
    const { rows } = await (await ns.sql()).query(
      `INSERT INTO ${ns.outboxTable} (id, event_name, event_version, payload, headers, occurred_at, available_at, status, attempts, last_error, sent_at, locked_until)
       SELECT gen_random_uuid(), 'ops.batched', 1, '{}', '{}'::jsonb, now(), now() + interval '1 hour',
              CASE WHEN k IN ('failed', 'leased') THEN 'pending' ELSE k END,
              CASE WHEN k IN ('failed', 'leased') THEN 2 ELSE 0 END,
              CASE WHEN k IN ('failed', 'leased') THEN 'nacked' END,
              CASE WHEN k = 'sent' THEN now() END,
              CASE WHEN k = 'leased' THEN now() + interval '1 hour' END
       FROM unnest($1::text[]) WITH ORDINALITY AS kinds(k, n) ORDER BY n
       RETURNING id`,
      [kinds],
    );
    return rows.map((row: { id: string }) => row.id);
  }
  const rowsById = async () =>
    new Map(
      (await (await ns.sql()).query(`SELECT id, status, available_at <= now() AS due, locked_until IS NOT NULL AS leased FROM ${ns.outboxTable}`)).rows.map(
        (row: { id: string; status: string; due: boolean; leased: boolean }) => [row.id, row],
      ),
    );

  it('retries every stuck row once, in batches, in the table\'s order, leaving leased, sent and skipped rows alone', async () => {
    const kinds: Kind[] = ['failed', 'unroutable', 'sent', 'failed', 'leased', 'skipped', 'failed', 'pending', 'unroutable', 'failed', 'failed'];
    const ids = await insert(kinds);
    const stuck = ids.filter((_, i) => kinds[i] === 'failed' || kinds[i] === 'unroutable');

    // Batches of 2: the retried rows still match "failed" (pending, attempts > 0), and must not be taken again.
    expect(await operations(2).retry({ all: 'stuck' })).toEqual(stuck);
    const rows = await rowsById();
    for (const id of stuck) expect(rows.get(id)).toMatchObject({ status: 'pending', due: true, leased: false });
    for (const [i, kind] of kinds.entries()) {
      if (kind === 'leased') expect(rows.get(ids[i]!)).toMatchObject({ status: 'pending', due: false, leased: true });
      if (kind === 'sent' || kind === 'skipped') expect(rows.get(ids[i]!)).toMatchObject({ status: kind });
      if (kind === 'pending') expect(rows.get(ids[i]!)).toMatchObject({ status: 'pending', due: false });
    }
    // Nothing left to take.
    expect(await operations(2).retry({ all: 'unroutable' })).toEqual([]);
  });

  it('makes a failed row due now, but leaves a row never attempted at its own later time (a scheduled event, or one skipped and brought back)', async () => {
    // All due in an hour: a failed row by its backoff, the others by their deliverAt.
    const [failed, scheduled, skipped, unroutable] = await insert(['failed', 'pending', 'skipped', 'unroutable']);
    expect(await operations().retry({ ids: [failed!, scheduled!, skipped!, unroutable!] })).toEqual([failed, scheduled, skipped, unroutable]);
    const rows = await rowsById();
    expect(rows.get(failed!)).toMatchObject({ status: 'pending', due: true });
    expect(rows.get(scheduled!)).toMatchObject({ status: 'pending', due: false });
    expect(rows.get(skipped!)).toMatchObject({ status: 'pending', due: false });
    expect(rows.get(unroutable!)).toMatchObject({ status: 'pending', due: true });
    // Its time kept, not moved: still the hour ahead it was given.
    const { rows: [kept] } = await (await ns.sql()).query(`SELECT available_at > now() + interval '59 minutes' AS kept FROM ${ns.outboxTable} WHERE id = $1`, [scheduled]);
    expect(kept.kept).toBe(true);
  });

  it('says how many rows it changed when a batch fails part-way: those stay changed, the rest untouched, and running it again takes the rest', async () => {
    const ids = await insert(['failed', 'failed', 'failed', 'failed', 'failed']);
    const db = await ns.sql();
    // The fourth row refuses to change (a trigger of the test's), once.
    await db.query(`CREATE TABLE "${ns.schema}".refusals (id uuid PRIMARY KEY)`);
    await db.query(`INSERT INTO "${ns.schema}".refusals VALUES ($1)`, [ids[3]]);
    await db.query(
      `CREATE FUNCTION "${ns.schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF EXISTS (SELECT 1 FROM "${ns.schema}".refusals WHERE id = OLD.id) THEN RAISE EXCEPTION 'refused by the test'; END IF;
         RETURN NEW;
       END $$`,
    );
    await db.query(`CREATE TRIGGER refuse BEFORE UPDATE ON ${ns.outboxTable} FOR EACH ROW EXECUTE FUNCTION "${ns.schema}".refuse()`);
    const stopped = await operations(2).retry({ all: 'failed' }).catch((error: unknown) => error);
    expect(stopped).toBeInstanceOf(OutboxChangeInterruptedError);
    expect((stopped as OutboxChangeInterruptedError).message).toMatch(
      /^Stopped after 2 of 5 row\(s\), which stay changed \(running it again takes the rest\): refused by the test/,
    );
    expect(stopped).toMatchObject({ changed: ids.slice(0, 2), selected: 5 });
    const due = async () => (await db.query(`SELECT id FROM ${ns.outboxTable} WHERE available_at <= now() ORDER BY seq`)).rows.map((row: { id: string }) => row.id);
    expect(await due()).toEqual(ids.slice(0, 2));
    await db.query(`DELETE FROM "${ns.schema}".refusals`);
    expect(await operations(2).retry({ all: 'failed' })).toEqual(ids);
    expect(await due()).toEqual(ids);
  });

  it('skips every failed row once across batches of the default size, and by id in one statement', async () => {
    const kinds: Kind[] = [...Array.from({ length: 2_100 }, (): Kind => 'failed'), 'leased', 'unroutable', 'sent'];
    const ids = await insert(kinds);
    const failed = ids.slice(0, 2_100);
    expect(await operations().skip({ all: 'failed' })).toEqual(failed);
    const rows = await rowsById();
    expect(failed.filter((id) => rows.get(id)?.status !== 'skipped')).toEqual([]);
    expect(rows.get(ids[2_100]!)).toMatchObject({ status: 'pending', leased: true });
    expect(rows.get(ids[2_101]!)).toMatchObject({ status: 'unroutable' });

    expect(await operations(2).retry({ ids: [failed[5]!, ids[2_101]!, ids[2_102]!] })).toEqual(expect.arrayContaining([failed[5], ids[2_101]]));
    expect((await rowsById()).get(ids[2_102]!)).toMatchObject({ status: 'sent' });
  });
});
