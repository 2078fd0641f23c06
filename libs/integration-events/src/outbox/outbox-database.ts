import { Injectable, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { getDataSourceToken } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { InvalidIntegrationEventsOptionsError } from '../errors/invalid-options.error';
import { InboxTableMissingError } from '../errors/inbox-table-missing.error';
import { OutboxTableMissingError } from '../errors/outbox-table-missing.error';
import { UnsupportedDatabaseError } from '../errors/unsupported-database.error';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { WakeSignal } from '../relay/wake-signal';
import { PostgresInboxStore } from '../inbox/inbox.store';
import { OutboxCommitSubscriber } from './outbox-commit.subscriber';
import type { OutboxStore } from './outbox.store';
import { OutboxTableName } from './outbox-table-name';
import { PostgresOutboxStore } from './postgres-outbox.store';

/**
 * Connects the library to the application's TypeORM DataSource: finds it by name (so `forRootAsync`
 * options can choose it), builds the outbox store on it, and hooks the commit subscriber that wakes
 * the relay.
 */
@Injectable()
export class OutboxDatabase implements OnModuleInit {
  private resolved:
    | { dataSource: DataSource; store: OutboxStore; table: OutboxTableName; inboxStore: PostgresInboxStore }
    | undefined;
  private readonly subscriber: OutboxCommitSubscriber;

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly moduleRef: ModuleRef,
    wakeSignal: WakeSignal,
  ) {
    this.subscriber = new OutboxCommitSubscriber(() => wakeSignal.notify());
  }

  onModuleInit(): void {
    if (this.resolved) return;
    const { dataSourceName, outbox } = this.config.options;
    let dataSource: DataSource;
    try {
      dataSource = this.moduleRef.get<DataSource>(getDataSourceToken(dataSourceName) as string, { strict: false });
    } catch {
      throw new InvalidIntegrationEventsOptionsError(
        'dataSourceName',
        dataSourceName,
        'import TypeOrmModule.forRoot() (or forRootAsync) with a DataSource of that name in the application',
      );
    }
    if (dataSource.options.type !== 'postgres') throw new UnsupportedDatabaseError(String(dataSource.options.type));
    const table = new OutboxTableName(outbox.schema, outbox.table);
    const { inbox } = this.config.options;
    this.resolved = {
      dataSource,
      table,
      store: new PostgresOutboxStore(dataSource, table),
      inboxStore: new PostgresInboxStore(dataSource, new OutboxTableName(inbox.schema, inbox.table)),
    };
    dataSource.subscribers.push(this.subscriber);
  }

  /** Unhooks the commit subscriber. Called once the relay has stopped (commits made while consumers drain still wake it). */
  detach(): void {
    const subscribers = this.resolved?.dataSource.subscribers;
    const index = subscribers?.indexOf(this.subscriber) ?? -1;
    if (index >= 0) subscribers!.splice(index, 1);
  }

  /** Fails boot with a clear error when the outbox table was never created. */
  async assertTableExists(): Promise<void> {
    const { table } = this.get();
    if (!(await this.exists(table))) throw new OutboxTableMissingError(table.qualified);
  }

  /** Fails boot with a clear error when the inbox table was never created. */
  async assertInboxTableExists(): Promise<void> {
    const { table } = this.get().inboxStore;
    if (!(await this.exists(table))) throw new InboxTableMissingError(table.qualified);
  }

  private async exists(table: OutboxTableName): Promise<boolean> {
    const [row] = (await this.get().dataSource.query('SELECT to_regclass($1) AS found', [table.qualified])) as Array<{
      found: string | null;
    }>;
    return Boolean(row?.found);
  }

  get dataSource(): DataSource {
    return this.get().dataSource;
  }

  get store(): OutboxStore {
    return this.get().store;
  }

  get table(): OutboxTableName {
    return this.get().table;
  }

  get inboxStore(): PostgresInboxStore {
    return this.get().inboxStore;
  }

  private get(): NonNullable<OutboxDatabase['resolved']> {
    if (!this.resolved) this.onModuleInit();
    return this.resolved!;
  }
}
