import type { EntityManager } from 'typeorm';
import type { ClaimedOutboxRecord, FailedOutboxRecord, NewOutboxRecord } from './outbox-record';

/**
 * Where outbox rows live. `insert` runs on the caller's EntityManager (so it joins the caller's
 * transaction); everything else is the relay's and runs on its own connections.
 */
export interface OutboxStore {
  /** Writes the rows through `manager`, inside whatever transaction it belongs to. */
  insert(manager: EntityManager, records: readonly NewOutboxRecord[]): Promise<void>;
  /**
   * Reserves up to `limit` due rows for `leaseMs`, oldest first, skipping rows another relay holds.
   * Returned rows are ordered by their position in the outbox.
   */
  claim(limit: number, leaseMs: number): Promise<ClaimedOutboxRecord[]>;
  /** Marks rows as confirmed by the broker. */
  markSent(ids: readonly string[]): Promise<void>;
  /** Records a failed publish attempt per row and makes each due again after its delay. */
  markFailed(records: readonly FailedOutboxRecord[]): Promise<void>;
  /** Gives up the lease on rows that were claimed but not published (the broker went away). */
  release(ids: readonly string[]): Promise<void>;
  /** Flags rows the broker returned as unroutable; they wait for an operator, not for the relay. */
  markUnroutable(ids: readonly string[], reason: string): Promise<void>;
}
