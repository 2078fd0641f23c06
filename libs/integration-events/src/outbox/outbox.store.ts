import type { EntityManager } from 'typeorm';
import type { OutboxLease } from '../relay/relay-handoff';
import type { ClaimedOutboxRecord, FailedOutboxRecord, NewOutboxRecord } from './outbox-record';

/**
 * Where outbox rows live. `insert` runs on the caller's EntityManager (so it joins the caller's
 * transaction); everything else is the relay's and runs on its own connections.
 */
export interface OutboxStore {
  /**
   * Writes the rows through `manager`, inside whatever transaction it belongs to; with a `lease`, already
   * held by this process's relay under the lease's token, from the insert for `leaseMs`.
   */
  insert(manager: EntityManager, records: readonly NewOutboxRecord[], lease?: OutboxLease): Promise<void>;
  /**
   * Reserves up to `limit` due rows for `leaseMs` under `leaseToken`, oldest first, skipping rows another
   * relay holds. Returned rows are in outbox order.
   */
  claim(limit: number, leaseMs: number, leaseToken: string): Promise<ClaimedOutboxRecord[]>;
  /**
   * Marks rows as confirmed by the broker. Like every mark below, it only touches rows still held under
   * `leaseToken`: a relay whose lease ran out can never overwrite what another relay did since.
   */
  markSent(ids: readonly string[], leaseToken: string): Promise<void>;
  /** Records a failed publish attempt per row and makes each due again after its delay. */
  markFailed(records: readonly FailedOutboxRecord[], leaseToken: string): Promise<void>;
  /** Gives up the lease on rows that were claimed but not published (the broker went away). */
  release(ids: readonly string[], leaseToken: string): Promise<void>;
  /** Flags rows the broker returned as unroutable; they wait for an operator, not for the relay. */
  markUnroutable(ids: readonly string[], reason: string, leaseToken: string): Promise<void>;
  /**
   * Pending rows that are due, since when the oldest of them has been due, and for how long in ms (0 for
   * none), on the database's clock: a service whose clock is off would show its skew as lag (for metrics
   * and health).
   */
  backlog(): Promise<{ pending: number; oldestDueAt: Date | null; lagMs: number }>;
  /**
   * Pending rows whose publishing failed `minAttempts` times or more (for health: a row the broker keeps
   * refusing is due again after each retry delay, so the backlog's age alone never shows it), and the
   * last error of the one that failed most.
   */
  failing(minAttempts: number): Promise<{ rows: number; lastError: string | null }>;
  /** Deletes up to `limit` rows sent more than `olderThanMs` ago; returns how many. */
  deleteSent(olderThanMs: number, limit: number): Promise<number>;
}
