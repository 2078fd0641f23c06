import type { TestingModule } from '@nestjs/testing';
import { CleanupWorker } from 'nestjs-integration-events';
import { consistently, eventually } from './support/eventually';
import { startTestApp } from './support/test-app';
import { TestNamespace } from './support/test-namespace';

/** The smallest `cleanup.intervalMs` the options accept. */
const INTERVAL_MS = 100;

/**
 * Short retentions, each its own: a sent outbox row goes after a minute, an inbox row after two. (Well
 * above the 1 s minimum, so that the rows meant to stay stay for the whole test.) No handler uses the
 * inbox, so boot accepts an inbox retention this short.
 */
const RETENTION = { outbox: { retentionMs: 60_000 }, inbox: { retentionMs: 120_000 } };

/** What the cleanup may delete, and what it must keep, counted by kind. */
interface Rows {
  oldSent: number;
  recentSent: number;
  pending: number;
  unroutable: number;
  oldInbox: number;
  /** Older than the outbox's retention, within the inbox's own. */
  keptInbox: number;
  recentInbox: number;
}

const EVENT = 'cleanup.scheduled';

/** Old sent rows (2 minutes) and old inbox records (3 minutes), as `tag` to tell rounds apart. */
async function insertOld(ns: TestNamespace, tag: string, outbox: number, inbox: number): Promise<void> {
  const db = await ns.sql();
  await db.query(
    `INSERT INTO ${ns.outboxTable} (id, event_name, event_version, payload, headers, occurred_at, status, sent_at, available_at, created_at)
     SELECT gen_random_uuid(), $1, 1, '{}', '{}', now() - interval '1 day', 'sent', now() - interval '2 minutes', now(), now() - interval '1 day'
     FROM generate_series(1, $2)`,
    [`${EVENT}.old-${tag}`, outbox],
  );
  await db.query(
    `INSERT INTO ${ns.inboxTable} (handler, message_id, handled_at) SELECT 'h', $1 || i, now() - interval '3 minutes' FROM generate_series(1, $2) i`,
    [`old-${tag}-`, inbox],
  );
}

/** Rows no cleanup may delete: sent within the retention, never sent (however old), inbox records within theirs. */
async function insertKept(ns: TestNamespace): Promise<void> {
  const db = await ns.sql();
  const outbox = (name: string, status: string, sentAt: string, count: number) =>
    db.query(
      `INSERT INTO ${ns.outboxTable} (id, event_name, event_version, payload, headers, occurred_at, status, sent_at, available_at, created_at)
       SELECT gen_random_uuid(), $1, 1, '{}', '{}', now() - interval '1 day', '${status}', ${sentAt}, now() - interval '1 day', now() - interval '1 day'
       FROM generate_series(1, $2)`,
      [`${EVENT}.${name}`, count],
    );
  await outbox('recent-sent', 'sent', 'now()', 4);
  await outbox('pending', 'pending', 'NULL', 6);
  await outbox('unroutable', 'unroutable', 'NULL', 2);
  await db.query(`INSERT INTO ${ns.inboxTable} (handler, message_id, handled_at) SELECT 'h', 'kept-' || i, now() - interval '90 seconds' FROM generate_series(1, 3) i`);
  await db.query(`INSERT INTO ${ns.inboxTable} (handler, message_id) VALUES ('h', 'recent')`);
}

async function countRows(ns: TestNamespace): Promise<Rows> {
  const db = await ns.sql();
  const outbox = async (where: string) =>
    (await db.query(`SELECT count(*)::int AS n FROM ${ns.outboxTable} WHERE ${where}`)).rows[0].n as number;
  const inbox = async (pattern: string) =>
    (await db.query(`SELECT count(*)::int AS n FROM ${ns.inboxTable} WHERE message_id LIKE $1`, [pattern])).rows[0].n as number;
  return {
    oldSent: await outbox(`event_name LIKE '${EVENT}.old-%'`),
    recentSent: await outbox(`event_name = '${EVENT}.recent-sent' AND status = 'sent'`),
    pending: await outbox(`event_name = '${EVENT}.pending' AND status = 'pending'`),
    unroutable: await outbox(`event_name = '${EVENT}.unroutable' AND status = 'unroutable'`),
    oldInbox: await inbox('old-%'),
    keptInbox: await inbox('kept-%'),
    recentInbox: await inbox('recent'),
  };
}

const KEPT = { recentSent: 4, pending: 6, unroutable: 2, keptInbox: 3, recentInbox: 1 };

/** The cleanup on its own timer (`cleanup.intervalMs`), and `cleanup.enabled: false` turning it off. */
describe('scheduled cleanup', () => {
  let ns: TestNamespace;
  let app: TestingModule | undefined;

  beforeEach(async () => {
    ns = await TestNamespace.create();
  });

  afterEach(async () => {
    await app?.close();
    app = undefined;
    await ns?.cleanup();
  });

  it('deletes old rows every cleanup.intervalMs, run after run, without runOnce(), and keeps the rest', async () => {
    // No relay: the pending rows stay pending. Batches of 7: a run deletes several.
    app = await startTestApp(ns, {
      providers: [],
      options: { ...RETENTION, relay: { enabled: false }, cleanup: { intervalMs: INTERVAL_MS, batchSize: 7 } },
    });
    await insertKept(ns);
    await insertOld(ns, 'first', 15, 20);
    await eventually(async () => expect(await countRows(ns)).toEqual({ ...KEPT, oldSent: 0, oldInbox: 0 }), { timeoutMs: 5_000 });

    // Old rows that come later go at a later run: the timer runs again after each run.
    await insertOld(ns, 'second', 9, 8);
    await eventually(async () => expect(await countRows(ns)).toEqual({ ...KEPT, oldSent: 0, oldInbox: 0 }), { timeoutMs: 5_000 });

    // Ten intervals' worth of runs later, what is to be kept is still there.
    await consistently(async () => expect(await countRows(ns)).toEqual({ ...KEPT, oldSent: 0, oldInbox: 0 }), { forMs: 10 * INTERVAL_MS });
  });

  it('runs no cleanup with cleanup.enabled false, however short its interval', async () => {
    app = await startTestApp(ns, {
      providers: [],
      options: { ...RETENTION, relay: { enabled: false }, cleanup: { enabled: false, intervalMs: INTERVAL_MS, batchSize: 7 } },
    });
    await insertKept(ns);
    await insertOld(ns, 'first', 15, 20);
    // Fifteen intervals: the timer, were it on, would have run many times.
    await consistently(async () => expect(await countRows(ns)).toEqual({ ...KEPT, oldSent: 15, oldInbox: 20 }), { forMs: 15 * INTERVAL_MS });

    // The old rows were the cleanup's to delete: a run asked for takes them, and only them.
    await expect(app.get(CleanupWorker).runOnce()).resolves.toEqual({ outbox: 15, inbox: 20 });
    expect(await countRows(ns)).toEqual({ ...KEPT, oldSent: 0, oldInbox: 0 });
  });
});
