import { Injectable } from '@nestjs/common';
import { isInstance } from '../util/is-instance';
import type { EntityManager, QueryRunner } from 'typeorm';
import { TransactionsNotConfiguredError } from '../errors/transactions-not-configured.error';
import { EntityManagerResolver } from '../outbox/entity-manager.resolver';
import { AbandonedAttempt } from './abandoned-attempt';
import { InboxRecordConflict } from './inbox.store';
import { TurnRefusedAtShutdownError } from './turn-refused-at-shutdown.error';
import { assertTransactionNotAborted, isCheckedAfterDomainEvents, wasRolledBackAtCommit } from '../outbox/aborted-transaction';
import { TransactionAbortedError } from '../errors/transaction-aborted.error';
import { OutboxDatabase } from '../outbox/outbox-database';
import { IntegrationEventsConfig } from '../options/integration-events.config';

/** Tells whether the attempt was given up (its timeout passed) and why; an `AbortSignal` fits. */
export interface AbandonState {
  readonly aborted: boolean;
  readonly reason: unknown;
  /**
   * Told when the attempt's last check before `COMMIT` passed: the transaction commits now, and a
   * timeout that passes meanwhile waits for that commit's outcome (for a while) instead of giving the
   * attempt up while its effects are being committed.
   */
  beginCommit?(): void;
  /**
   * Fires when the application shuts down: a call still waiting for its turn (SQLite) never starts, and
   * its message goes back to its queue, as a delivery not yet started does.
   */
  readonly shutdown?: AbortSignal;
}

/**
 * Runs a handler call at most once per (handler, message): in a new transaction that first records the
 * pair in the inbox, then runs the handler in it (its `@Transactional()` code, and the integration events
 * it publishes, join that transaction). The record, the handler's writes and its outbox rows commit
 * together or not at all; a duplicate finds the record and is skipped. A call whose attempt was abandoned
 * (its timeout passed) rolls back even if it finishes later, so its retry is not a second effect. (Shutdown
 * abandons nothing: it fires the handler's signal, and a call that still commits commits once.)
 */
@Injectable()
export class InboxGuard {
  constructor(
    private readonly managers: EntityManagerResolver,
    private readonly database: OutboxDatabase,
    private readonly config: IntegrationEventsConfig,
  ) {}

  /**
   * Fails boot when the inbox cannot work: no nestjs-cls transactions, transactions on another
   * DataSource (every handler call would fail: the inbox table is not there, publish() refuses the
   * transaction), or no inbox table.
   */
  async assertReady(): Promise<void> {
    const host = this.managers.host();
    if (!host) throw new TransactionsNotConfiguredError('The inbox (inbox.enabled)');
    // Outside a transaction the host gives its adapter's fallback: the DataSource's own manager.
    const hostDataSource = (host.tx as Partial<EntityManager> | undefined)?.dataSource;
    if (hostDataSource !== this.database.dataSource) {
      throw new TransactionsNotConfiguredError('The inbox (inbox.enabled)', this.config.options.dataSourceName);
    }
    await this.database.assertInboxTableExists();
  }

  /**
   * @param onTurn on SQLite, called when this call's turn comes after waiting for the others (the caller
   *   restarts its timeout there); on PostgreSQL there is no wait and it is not called
   * @returns `false` when the message was already handled (nothing ran)
   * @throws what the handler threw (the transaction rolled back, nothing recorded)
   */
  async runOnce(
    handlerKey: string,
    messageId: string,
    abandoned: AbandonState,
    call: () => Promise<void>,
    onTurn: () => void = () => undefined,
  ): Promise<boolean> {
    const host = this.managers.host();
    if (!host) throw new TransactionsNotConfiguredError('The inbox (inbox.enabled)');
    // The caller runs this in a fresh CLS context, so this is always a new transaction.
    const run = (): Promise<boolean> => {
      // Given up while waiting for its turn (SQLite): nothing to start.
      if (abandoned.aborted) return Promise.reject(abandoned.reason ?? new Error('The attempt was abandoned'));
      let runner: QueryRunner | undefined;
      return host.withTransaction(async () => {
        const manager = host.tx as unknown as EntityManager;
        // Code run at the commit (the cqrs bridge's domain-event handlers) checks it again after itself.
        runner = manager.queryRunner;
        if (runner) AbandonedAttempt.attach(runner, abandoned);
        if (!(await this.database.inboxStore.record(manager, handlerKey, messageId))) return false;
        // Given up while the record waited for an earlier attempt's lock (PostgreSQL): the handler's
        // effects elsewhere must not happen for an attempt already counted as failed.
        if (abandoned.aborted) throw abandoned.reason ?? new Error('The attempt was abandoned');
        await call();
        if (abandoned.aborted) throw abandoned.reason ?? new Error('The attempt was abandoned');
        // The handler caught a failed statement: committing would roll back its writes and the inbox
        // record silently, and the message would be acknowledged as handled.
        // A statement may still fail after this check (an application's commit hook catching its error):
        // what PostgreSQL answers the COMMIT tells, and is looked at once it has come (below).
        if (manager.queryRunner) await assertTransactionNotAborted(manager.queryRunner, "The handler's transaction");
        // Given up during that check (a round trip on older node-postgres): not committed, not counted twice.
        if (abandoned.aborted) throw abandoned.reason ?? new Error('The attempt was abandoned');
        // The last check, unless the cqrs bridge runs domain-event handlers at the commit and checks after them.
        if (!(manager.queryRunner && isCheckedAfterDomainEvents(manager.queryRunner))) abandoned.beginCommit?.();
        return true;
      })
        .then((ran) => {
          // Answered with ROLLBACK: the record and the handler's writes are gone; acknowledged, the
          // message would be lost. The attempt fails instead, and is retried.
          if (ran && runner && wasRolledBackAtCommit(runner)) throw new TransactionAbortedError("The handler's transaction");
          return ran;
        })
        .catch(async (error: unknown) => {
          // A concurrent duplicate in a REPEATABLE READ or SERIALIZABLE transaction: rolled back now, its
          // connection returned, it asks whether the first attempt's record is there (see InboxRecordConflict).
          if (!isInstance(error, InboxRecordConflict)) throw error;
          if (await error.recordedNow()) return false;
          throw error.serializationFailure;
        })
        .finally(() => {
          if (runner) AbandonedAttempt.detach(runner, abandoned);
        });
    };
    // On SQLite, transactions open at once would nest on its one connection: they take turns.
    const sqlite = this.database.sqlite;
    if (!sqlite) return run();
    let started = false;
    return sqlite
      .exclusive(() => {
        started = true;
        if (!abandoned.aborted) onTurn();
        return run();
      }, abandoned.shutdown)
      .catch((error: unknown) => {
        if (!started && abandoned.shutdown?.aborted) throw new TurnRefusedAtShutdownError(handlerKey);
        throw error;
      });
  }
}
