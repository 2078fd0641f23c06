import type { DataSource, EntityManager } from 'typeorm';
import type { ClaimedOutboxRecord, FailedOutboxRecord, NewOutboxRecord } from './outbox-record';
import type { OutboxLease } from '../relay/relay-handoff';
import type { OutboxStore } from './outbox.store';
import type { OutboxTableName } from './outbox-table-name';
import { PostgresStatements } from './postgres-statements';

interface ClaimedRow {
  id: string;
  event_name: string;
  event_version: number;
  payload: string;
  headers: ClaimedOutboxRecord['headers'];
  occurred_at: Date;
  attempts: number;
  seq: string;
}

/**
 * The PostgreSQL outbox. Claims use `FOR UPDATE SKIP LOCKED` plus a lease column: the row lock keeps
 * two relays from claiming one row at the same instant, the lease keeps it theirs while they publish
 * outside any transaction (no transaction stays open across broker round trips), and expires so a
 * crashed relay's rows are taken over. Every statement's text is fixed at construction, so the
 * server sees a small set of statements whatever the batch size.
 */
export class PostgresOutboxStore implements OutboxStore {
  private readonly insertOneSql: string;
  private readonly insertManySql: string;
  private readonly claimSql: string;
  private readonly markSentSql: string;
  private readonly markFailedSql: string;
  private readonly markUnroutableSql: string;
  private readonly releaseSql: string;
  private readonly deleteSentSql: string;
  private readonly backlogSql: string;
  private readonly failingSql: string;

  constructor(
    private readonly dataSource: DataSource,
    table: OutboxTableName,
    private readonly statements: PostgresStatements = new PostgresStatements(dataSource, true),
  ) {
    const t = table.qualified;
    const columns = 'id, event_name, event_version, payload, headers, occurred_at, available_at, locked_until, lease_token';
    // available_at: the given time for a delayed event, else the database's now() (the default).
    // locked_until/lease_token: the relay's handoff lease ($8 ms from the insert itself, not from the
    // transaction's start), or NULL and NULL.
    const lease = "clock_timestamp() + $8::int * interval '1 millisecond', $9::uuid";
    this.insertOneSql = `INSERT INTO ${t} (${columns}) VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7::timestamptz, now()), ${lease})`;
    this.insertManySql =
      `INSERT INTO ${t} (${columns}) ` +
      `SELECT id, name, version, payload, headers, occurred_at, COALESCE(available_at, now()), ${lease} FROM unnest(` +
      '$1::uuid[], $2::varchar[], $3::int[], $4::text[], $5::jsonb[], $6::timestamptz[], $7::timestamptz[]) ' +
      'AS r(id, name, version, payload, headers, occurred_at, available_at)';
    // Rows held by this relay's current lease: every mark checks it.
    const held = "status = 'pending' AND lease_token = $2";
    // The lease runs from when the claim runs (clock_timestamp()), not from when it arrived (now()): a
    // claim that waited for a lock on the table (a migration, an ALTER queued behind a long transaction)
    // would otherwise hand over rows whose lease has already run for the wait. Rows are due by now(): a
    // row that became due during the wait is left to the next claim.
    this.claimSql =
      `UPDATE ${t} SET locked_until = clock_timestamp() + $2 * interval '1 millisecond', lease_token = $3 WHERE id IN (` +
      `SELECT id FROM ${t} WHERE status = 'pending' AND available_at <= now() ` +
      'AND (locked_until IS NULL OR locked_until <= now()) ' +
      'ORDER BY available_at, seq LIMIT $1 FOR UPDATE SKIP LOCKED) ' +
      'RETURNING id, event_name, event_version, payload, headers, occurred_at, attempts, seq';
    this.markSentSql =
      `UPDATE ${t} SET status = 'sent', sent_at = now(), locked_until = NULL, lease_token = NULL, last_error = NULL ` +
      `WHERE id = ANY($1::uuid[]) AND ${held}`;
    this.markFailedSql =
      `UPDATE ${t} AS o SET attempts = o.attempts + 1, last_error = f.error, locked_until = NULL, lease_token = NULL, ` +
      "available_at = now() + f.delay_ms * interval '1 millisecond' " +
      'FROM unnest($1::uuid[], $3::text[], $4::bigint[]) AS f(id, error, delay_ms) ' +
      "WHERE o.id = f.id AND o.status = 'pending' AND o.lease_token = $2";
    // Sent rows only, oldest first, through the partial index on sent_at. SKIP LOCKED: two cleanups never
    // wait for each other, and the relay never touches sent rows, so neither waits for the other.
    this.deleteSentSql =
      `DELETE FROM ${t} WHERE id IN (SELECT id FROM ${t} WHERE status = 'sent' ` +
      "AND sent_at < now() - $1 * interval '1 millisecond' ORDER BY sent_at LIMIT $2 FOR UPDATE SKIP LOCKED)";
    this.backlogSql =
      'SELECT count(*)::int AS pending, min(available_at) AS oldest, ' +
      `COALESCE(extract(epoch FROM now() - min(available_at)) * 1000, 0)::float8 AS lag_ms FROM ${t} WHERE status = 'pending' AND available_at <= now()`;
    const failingRows = `FROM ${t} WHERE status = 'pending' AND attempts >= $1`;
    this.failingSql = `SELECT count(*)::int AS rows, (SELECT last_error ${failingRows} ORDER BY attempts DESC, seq LIMIT 1) AS last_error ${failingRows}`;
    this.releaseSql = `UPDATE ${t} SET locked_until = NULL, lease_token = NULL WHERE id = ANY($1::uuid[]) AND ${held}`;
    this.markUnroutableSql =
      `UPDATE ${t} SET status = 'unroutable', locked_until = NULL, lease_token = NULL, last_error = $3 ` +
      `WHERE id = ANY($1::uuid[]) AND ${held}`;
  }

  async insert(manager: EntityManager, records: readonly NewOutboxRecord[], lease?: OutboxLease): Promise<void> {
    const leaseMs = lease?.leaseMs ?? null;
    const leaseToken = lease?.token ?? null;
    if (records.length === 1) {
      const r = records[0]!;
      await this.statements.onManager(manager, this.insertOneSql, [
        r.id,
        r.eventName,
        r.eventVersion,
        r.payload,
        JSON.stringify(r.headers),
        r.occurredAt.toISOString(),
        r.availableAt?.toISOString() ?? null,
        leaseMs,
        leaseToken,
      ]);
      return;
    }
    await this.statements.onManager(manager, this.insertManySql, [
      records.map((r) => r.id),
      records.map((r) => r.eventName),
      records.map((r) => r.eventVersion),
      records.map((r) => r.payload),
      records.map((r) => JSON.stringify(r.headers)),
      records.map((r) => r.occurredAt.toISOString()),
      records.map((r) => r.availableAt?.toISOString() ?? null),
      leaseMs,
      leaseToken,
    ]);
  }

  async claim(limit: number, leaseMs: number, leaseToken: string): Promise<ClaimedOutboxRecord[]> {
    const { rows } = await this.statements.onPool<ClaimedRow>(this.claimSql, [limit, leaseMs, leaseToken]);
    return rows
      .sort((a, b) => compareSeq(a.seq, b.seq))
      .map((row) => ({
        id: row.id,
        eventName: row.event_name,
        eventVersion: row.event_version,
        payload: row.payload,
        headers: row.headers,
        occurredAt: row.occurred_at,
        attempts: row.attempts,
      }));
  }

  async markSent(ids: readonly string[], leaseToken: string): Promise<void> {
    if (ids.length > 0) await this.statements.onPool(this.markSentSql, [ids, leaseToken]);
  }

  async markFailed(records: readonly FailedOutboxRecord[], leaseToken: string): Promise<void> {
    if (records.length === 0) return;
    await this.dataSource.query(this.markFailedSql, [
      records.map((r) => r.id),
      leaseToken,
      records.map((r) => r.error.slice(0, 2_000)),
      records.map((r) => Math.max(0, Math.round(r.retryInMs))),
    ]);
  }

  async release(ids: readonly string[], leaseToken: string): Promise<void> {
    if (ids.length > 0) await this.dataSource.query(this.releaseSql, [ids, leaseToken]);
  }

  async failing(minAttempts: number): Promise<{ rows: number; lastError: string | null }> {
    const [row] = (await this.dataSource.query(this.failingSql, [minAttempts])) as Array<{ rows: number; last_error: string | null }>;
    return { rows: row?.rows ?? 0, lastError: row?.last_error ?? null };
  }

  async backlog(): Promise<{ pending: number; oldestDueAt: Date | null; lagMs: number }> {
    const [row] = (await this.dataSource.query(this.backlogSql)) as Array<{ pending: number; oldest: Date | null; lag_ms: number }>;
    return { pending: row?.pending ?? 0, oldestDueAt: row?.oldest ?? null, lagMs: Math.max(0, row?.lag_ms ?? 0) };
  }

  async deleteSent(olderThanMs: number, limit: number): Promise<number> {
    const result = (await this.dataSource.query(this.deleteSentSql, [olderThanMs, limit])) as [unknown[], number];
    return result[1];
  }

  async markUnroutable(ids: readonly string[], reason: string, leaseToken: string): Promise<void> {
    if (ids.length > 0) await this.dataSource.query(this.markUnroutableSql, [ids, leaseToken, reason.slice(0, 2_000)]);
  }
}

/** `seq` is a bigint, which pg returns as a string; compare without losing precision. */
function compareSeq(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}
