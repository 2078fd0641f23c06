import type { DataSource } from 'typeorm';
import type { OutboxStatus } from './outbox-record';
import type { OutboxTableName } from './outbox-table-name';
import { isOutboxRowId } from './outbox-row-id';
import { OutboxChangeInterruptedError } from '../errors/outbox-change-interrupted.error';

/** An outbox row, as an operator sees it. */
export interface OutboxRowSummary {
  readonly id: string;
  readonly eventName: string;
  readonly eventVersion: number;
  readonly status: OutboxStatus;
  readonly attempts: number;
  readonly lastError: string | null;
  readonly createdAt: Date;
  readonly availableAt: Date;
  readonly sentAt: Date | null;
}

/**
 * Which rows to show: `stuck` are rows that did not go out on their own — pending rows that failed at
 * least once, and unroutable ones.
 */
export type OutboxFilter = 'pending' | 'failed' | 'unroutable' | 'skipped' | 'sent' | 'stuck';

/** What `retry` / `skip` apply to: ids, or every row of a kind. */
export type OutboxSelection = { readonly ids: readonly string[] } | { readonly all: 'unroutable' | 'failed' | 'stuck' };

const FILTERS: Record<OutboxFilter, string> = {
  pending: "status = 'pending'",
  failed: "status = 'pending' AND attempts > 0",
  unroutable: "status = 'unroutable'",
  skipped: "status = 'skipped'",
  sent: "status = 'sent'",
  stuck: "(status = 'pending' AND attempts > 0) OR status = 'unroutable'",
};

/** The kinds of rows `retry` and `skip` take all of. */
const SELECTABLE_KINDS: ReadonlyArray<'unroutable' | 'failed' | 'stuck'> = ['unroutable', 'failed', 'stuck'];

/** No relay holds the row's lease (the claim's own condition). */
const NOT_LEASED = '(locked_until IS NULL OR locked_until <= now())';

/**
 * Operations on outbox rows for operators: list them, send stuck ones again at once, or skip them
 * (never send: kept with status `skipped`, for the record). Shared by `OutboxAdminService` and the
 * command line (`nestjs-integration-events outbox …`).
 */
export class OutboxOperations {
  /**
   * @param batchSize rows changed per statement by `retry` / `skip` of `{ all }`: after an outage that can
   *   be most of a large table, and one statement would hold every row's lock (and keep the relay's claims
   *   waiting on them) until it ends
   */
  constructor(
    private readonly dataSource: DataSource,
    private readonly table: OutboxTableName,
    private readonly batchSize = 1_000,
  ) {}

  async list(filter: OutboxFilter = 'stuck', limit = 100): Promise<OutboxRowSummary[]> {
    if (!Object.hasOwn(FILTERS, filter)) {
      throw new RangeError(`Unknown outbox filter ${JSON.stringify(filter)}: one of ${Object.keys(FILTERS).join(', ')}`);
    }
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`The limit of an outbox list must be a whole number from 1, not ${String(limit)}`);
    }
    const rows = (await this.dataSource.query(
      `SELECT id, event_name, event_version, status, attempts, last_error, created_at, available_at, sent_at
       FROM ${this.table.qualified} WHERE ${FILTERS[filter]} ORDER BY seq LIMIT $1`,
      [limit],
    )) as Array<Record<string, unknown>>;
    return rows.map((row) => ({
      id: row.id as string,
      eventName: row.event_name as string,
      eventVersion: row.event_version as number,
      status: row.status as OutboxStatus,
      attempts: row.attempts as number,
      lastError: row.last_error as string | null,
      createdAt: row.created_at as Date,
      availableAt: row.available_at as Date,
      sentAt: row.sent_at as Date | null,
    }));
  }

  /** Counts of rows by status (`failed` counts the pending rows that failed at least once). */
  async counts(): Promise<Record<'pending' | 'failed' | 'unroutable' | 'skipped' | 'sent', number>> {
    const [row] = (await this.dataSource.query(
      `SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending,
              count(*) FILTER (WHERE status = 'pending' AND attempts > 0)::int AS failed,
              count(*) FILTER (WHERE status = 'unroutable')::int AS unroutable,
              count(*) FILTER (WHERE status = 'skipped')::int AS skipped,
              count(*) FILTER (WHERE status = 'sent')::int AS sent
       FROM ${this.table.qualified}`,
    )) as Array<Record<'pending' | 'failed' | 'unroutable' | 'skipped' | 'sent', number>>;
    return row!;
  }

  /**
   * Makes rows due now: unroutable or skipped rows become pending again, pending ones waiting for their
   * retry delay lose it. The relay sends them on its next round. A row never attempted keeps a time of
   * its own still ahead (`deliverAt`, `delay`): retrying a scheduled event, or one skipped and brought
   * back, does not send it early. Rows already sent are left alone, and so are rows a relay is publishing
   * at this moment (their lease decides: sent, or failed and retried).
   * @returns the ids made due (or pending again at their own time)
   */
  async retry(selection: OutboxSelection): Promise<string[]> {
    return this.update(
      selection,
      "status IN ('pending', 'unroutable', 'skipped')",
      "status = 'pending', available_at = CASE WHEN attempts = 0 AND status <> 'unroutable' THEN GREATEST(available_at, now()) ELSE now() END",
    );
  }

  /**
   * Marks rows as never to be sent (`skipped`): for events that are wrong and must not go out. They
   * stay in the table for the record; `retry` brings one back. Rows already sent are left alone, and so
   * are rows a relay is publishing at this moment: it may already have sent them.
   * @returns the ids skipped
   */
  async skip(selection: OutboxSelection): Promise<string[]> {
    return this.update(selection, "status IN ('pending', 'unroutable')", "status = 'skipped'");
  }

  /**
   * Sets `set` on the selected rows. Given ids, in one statement; `{ all }`: the rows selected when it
   * starts, read once in `seq` order (no lock taken), then changed `batchSize` at a time by id, each
   * batch a short statement of its own that checks the selection again (a relay may have leased a row
   * meanwhile). One statement over most of a large table would be one long transaction holding all
   * their row locks, and holding back vacuum, until it ended.
   * @throws OutboxChangeInterruptedError naming how many rows were changed before a batch failed (those stay changed)
   */
  private async update(selection: OutboxSelection, allowed: string, set: string): Promise<string[]> {
    const { where, params } = this.where(selection, allowed);
    const t = this.table.qualified;
    const change = `UPDATE ${t} SET ${set}, locked_until = NULL, lease_token = NULL WHERE `;
    if ('ids' in selection) {
      const result = (await this.dataSource.query(`${change}${where} RETURNING id`, params)) as [Array<{ id: string }>, number];
      return result[0].map((row) => row.id);
    }
    const selected = ((await this.dataSource.query(`SELECT id FROM ${t} WHERE ${where} ORDER BY seq`)) as Array<{ id: string }>).map((row) => row.id);
    const changed: string[] = [];
    for (let from = 0; from < selected.length; from += this.batchSize) {
      const batch = selected.slice(from, from + this.batchSize);
      let result: [Array<{ id: string }>, number];
      try {
        result = (await this.dataSource.query(`${change}id = ANY($1::uuid[]) AND (${where}) RETURNING id`, [batch])) as typeof result;
      } catch (error) {
        throw new OutboxChangeInterruptedError(changed, selected.length, error);
      }
      // In the table's order (RETURNING follows whatever order the UPDATE found them in).
      const done = new Set(result[0].map((row) => row.id));
      changed.push(...batch.filter((id) => done.has(id)));
    }
    return changed;
  }

  /**
   * The selected rows in an `allowed` status that no relay holds: a relay publishing a row holds its lease
   * and marks it only under that lease, so taking the lease away would make its mark miss (the row sent
   * twice, or recorded as skipped after it went out).
   */
  private where(selection: OutboxSelection, allowed: string): { where: string; params: unknown[] } {
    const free = `${allowed} AND ${NOT_LEASED}`;
    // Checked as it comes (from an admin endpoint, say): `{ all: 'pending' }` must not skip every row due.
    if (typeof selection === 'object' && selection !== null && 'ids' in selection) {
      if (!Array.isArray(selection.ids)) throw new TypeError('The ids of an outbox selection must be an array of row ids (UUIDs)');
      const wrong = selection.ids.find((id) => !isOutboxRowId(id));
      if (wrong !== undefined) throw new RangeError(`${JSON.stringify(wrong) ?? String(wrong)} is not an outbox row id (a UUID)`);
      return { where: `id = ANY($1::uuid[]) AND ${free}`, params: [selection.ids] };
    }
    const all = (selection as { all?: unknown } | null)?.all;
    if (!SELECTABLE_KINDS.includes(all as never)) {
      throw new RangeError(`An outbox selection is { ids } or { all } with all one of ${SELECTABLE_KINDS.join(', ')}, not ${JSON.stringify(selection)}`);
    }
    return { where: `(${FILTERS[all as OutboxFilter]}) AND ${free}`, params: [] };
  }
}
