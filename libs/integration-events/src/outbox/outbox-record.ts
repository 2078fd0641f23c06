import type { MessageHeadersRecord } from '../envelope/outgoing-message';

/** Status of an outbox row. */
export type OutboxStatus = 'pending' | 'sent' | 'unroutable' | 'skipped';

/** A row about to be written by `publish()`. */
export interface NewOutboxRecord {
  /** Message id (UUID): the same on every publish attempt of this row. */
  readonly id: string;
  readonly eventName: string;
  readonly eventVersion: number;
  /** The event's JSON body, exactly as it will be sent. */
  readonly payload: string;
  /** Every header the message will carry, the `ie-*` contract headers included. */
  readonly headers: MessageHeadersRecord;
  readonly occurredAt: Date;
  /** When the relay may send it: `undefined` means at once (after the commit). */
  readonly availableAt?: Date;
}

/** A row claimed by the relay. */
export interface ClaimedOutboxRecord {
  readonly id: string;
  readonly eventName: string;
  readonly eventVersion: number;
  readonly payload: string;
  readonly headers: MessageHeadersRecord;
  readonly occurredAt: Date;
  /** Failed publish attempts so far. */
  readonly attempts: number;
}

/** A claimed row whose publish failed, with when to try it again. */
export interface FailedOutboxRecord {
  readonly id: string;
  readonly error: string;
  readonly retryInMs: number;
}
