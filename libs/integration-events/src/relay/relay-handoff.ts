import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import type { ClaimedOutboxRecord } from '../outbox/outbox-record';

/** The lease a row is written with when its relay will publish it straight after the commit. */
export interface OutboxLease {
  /** This process's handoff token (the row's `lease_token`). */
  readonly token: string;
  /** How long the row stays reserved (its `locked_until`, from the insert). */
  readonly leaseMs: number;
}

/**
 * Room in the lane held for rows leased to a transaction still open (they arrive at its commit): given
 * back when they are handed over, or rolled back.
 */
export interface LaneReservation {
  readonly rows: number;
  /** `performance.now()` when it was taken: one older than half the lease is let go (its rows are stale anyway). */
  readonly at: number;
}

/** A committed row handed to the relay, with when its lease was taken. */
export interface HandedOffRecord {
  readonly record: ClaimedOutboxRecord;
  /** `performance.now()` just before the insert: the lease cannot have started earlier. */
  readonly leasedAt: number;
}

/**
 * The fast lane from `publish()` to this process's relay. While the relay runs, `publish()` writes its
 * rows already leased to the relay (`lease_token` = this handoff's token), and once the transaction
 * commits the rows themselves are handed over here: the relay publishes them without querying the
 * outbox, and marks them sent under the same token. A rolled-back transaction (or savepoint) takes its
 * rows with it and hands nothing over. Nothing can be lost on this lane: the rows are in the outbox,
 * and if this process dies (or the handoff never comes) their lease runs out and any relay claims them.
 *
 * The lane is bounded (`capacity` rows, waiting or leased to transactions still open): past it, or
 * while the relay cannot publish, rows are written without a lease and the relay claims them from the
 * table, as rows committed by other processes are.
 */
@Injectable()
export class RelayHandoff {
  /** One token per process run: a restarted process never mistakes an old lease for its own. */
  readonly token = randomUUID();
  private readonly waiting: HandedOffRecord[] = [];
  /** Rows leased to transactions still open. */
  private readonly reserved = new Set<LaneReservation>();
  private lease: OutboxLease | undefined;
  private canPublish: () => boolean = () => false;
  private capacity = 0;
  private onHandedOff: () => void = () => undefined;
  private onRefused: (records: readonly ClaimedOutboxRecord[]) => void = () => undefined;

  /**
   * Opens the lane (the relay has started).
   * @param onHandedOff rings the relay when rows arrive
   * @param onRefused gives back rows that arrive after `close()`, so their lease can be released
   */
  open(settings: {
    leaseMs: number;
    capacity: number;
    canPublish: () => boolean;
    onHandedOff: () => void;
    onRefused: (records: readonly ClaimedOutboxRecord[]) => void;
  }): void {
    this.lease = { token: this.token, leaseMs: settings.leaseMs };
    this.capacity = settings.capacity;
    this.canPublish = settings.canPublish;
    this.onHandedOff = settings.onHandedOff;
    this.onRefused = settings.onRefused;
  }

  /** Closes the lane: `publish()` writes unleased rows from now on. Returns the rows still waiting. */
  close(): HandedOffRecord[] {
    this.lease = undefined;
    this.reserved.clear();
    return this.waiting.splice(0);
  }

  /**
   * The lease for `rows` rows about to be written, with the room it holds in the lane until they are
   * handed over (`handOff`) or gone (`discard`), or `undefined` when they should wait for a claim
   * instead: the rows waiting, those leased to every transaction still open and these must fit in
   * `capacity`, however many transactions publish at once.
   */
  leaseForInsert(rows = 1): { lease: OutboxLease; reservation: LaneReservation } | undefined {
    if (!this.lease || this.waiting.length + this.reservedRows() + rows > this.capacity || !this.canPublish()) return undefined;
    const reservation = { rows, at: performance.now() };
    this.reserved.add(reservation);
    return { lease: this.lease, reservation };
  }

  /** Gives back the room of rows leased but never handed over (rolled back, or their insert failed). */
  discard(reservations: Iterable<LaneReservation>): void {
    for (const reservation of reservations) this.reserved.delete(reservation);
  }

  /**
   * Rows held for open transactions. A reservation older than half the lease is let go (a transaction
   * that never ended, a rollback that failed): rows handed over that late are released as stale anyway.
   */
  private reservedRows(): number {
    let rows = 0;
    const expired = performance.now() - (this.lease?.leaseMs ?? 0) / 2;
    for (const reservation of this.reserved) {
      if (reservation.at < expired) this.reserved.delete(reservation);
      else rows += reservation.rows;
    }
    return rows;
  }

  /** Rows written under the lease whose transaction committed (or that were written outside one). */
  handOff(records: readonly ClaimedOutboxRecord[], leasedAt: number, reservation?: LaneReservation): void {
    if (reservation) this.reserved.delete(reservation);
    if (records.length === 0) return;
    if (!this.lease) {
      this.onRefused(records);
      return;
    }
    for (const record of records) this.waiting.push({ record, leasedAt });
    this.onHandedOff();
  }

  get size(): number {
    return this.waiting.length;
  }

  /** Takes up to `limit` rows, oldest handoff first. */
  take(limit: number): HandedOffRecord[] {
    return this.waiting.splice(0, limit);
  }
}
