import { Injectable, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { getDataSourceToken } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { InvalidIntegrationEventsOptionsError } from '../errors/invalid-options.error';
import { InboxTableMissingError } from '../errors/inbox-table-missing.error';
import { OutboxTableMissingError } from '../errors/outbox-table-missing.error';
import { TableShapeMismatchError } from '../errors/table-shape-mismatch.error';
import { UnsupportedDatabaseError } from '../errors/unsupported-database.error';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { RelayHandoff } from '../relay/relay-handoff';
import { WakeSignal } from '../relay/wake-signal';
import { type InboxStore, PostgresInboxStore, SqliteInboxStore } from '../inbox/inbox.store';
import { SqliteConnection } from './sqlite-connection';
import { SqliteOutboxStore } from './sqlite-outbox.store';
import { OutboxCommitSubscriber } from './outbox-commit.subscriber';
import type { OutboxStore } from './outbox.store';
import { OutboxTableName } from './outbox-table-name';
import { PostgresOutboxStore } from './postgres-outbox.store';
import { PostgresPoolGuard } from './postgres-pool-guard';
import { PostgresStatements } from './postgres-statements';

/**
 * Connects the library to the application's TypeORM DataSource: finds it by name (so `forRootAsync`
 * options can choose it), builds the outbox store on it, and hooks the commit subscriber that tells
 * the relay about committed rows. On PostgreSQL it also guards the pool's new connections (see
 * `PostgresPoolGuard`).
 */
@Injectable()
export class OutboxDatabase implements OnModuleInit {
  private resolved:
    | {
        dataSource: DataSource;
        store: OutboxStore;
        table: OutboxTableName;
        inboxStore: InboxStore;
        dialect: 'postgres' | 'sqlite';
        sqlite?: SqliteConnection;
        poolGuard?: PostgresPoolGuard;
      }
    | undefined;
  private readonly subscriber: OutboxCommitSubscriber;

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly moduleRef: ModuleRef,
    wakeSignal: WakeSignal,
    handoff: RelayHandoff,
  ) {
    this.subscriber = new OutboxCommitSubscriber(
      (writes) => {
        for (const { records, leasedAt, reservation, unsure } of writes.leased) {
          // Rows an application's own ROLLBACK may have undone: handed over as if their lease were gone,
          // the relay releases them and claims those still there, never publishing one that is not.
          handoff.handOff(records, unsure ? Number.NEGATIVE_INFINITY : leasedAt, reservation);
        }
        if (writes.claimNeeded) wakeSignal.notify();
      },
      (reservations) => handoff.discard(reservations),
    );
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
    const type = String(dataSource.options.type);
    const dialect = type === 'postgres' ? 'postgres' : type === 'better-sqlite3' ? 'sqlite' : undefined;
    if (!dialect) throw new UnsupportedDatabaseError(type);
    const { inbox } = this.config.options;
    if (dialect === 'sqlite' && (outbox.schema || inbox.schema)) {
      throw new InvalidIntegrationEventsOptionsError(
        outbox.schema ? 'outbox.schema' : 'inbox.schema',
        outbox.schema ?? inbox.schema,
        'leave it out on SQLite, which has no schemas',
      );
    }
    const table = new OutboxTableName(outbox.schema, outbox.table);
    const inboxTable = new OutboxTableName(inbox.schema, inbox.table);
    if (dialect === 'postgres') {
      const statements = new PostgresStatements(dataSource, outbox.preparedStatements);
      this.resolved = {
        dataSource,
        table,
        dialect,
        store: new PostgresOutboxStore(dataSource, table, statements),
        inboxStore: new PostgresInboxStore(dataSource, inboxTable, statements),
        poolGuard: new PostgresPoolGuard(dataSource),
      };
    } else {
      const sqlite = new SqliteConnection(dataSource);
      this.resolved = {
        dataSource,
        table,
        dialect,
        sqlite,
        store: new SqliteOutboxStore(dataSource, table, sqlite),
        inboxStore: new SqliteInboxStore(dataSource, inboxTable, sqlite),
      };
    }
    dataSource.subscribers.push(this.subscriber);
  }

  /**
   * Unhooks the commit subscriber and the pool guard. Called once the relay has stopped (commits made
   * while consumers drain still wake it).
   */
  detach(): void {
    this.resolved?.poolGuard?.release();
    const subscribers = this.resolved?.dataSource.subscribers;
    const index = subscribers?.indexOf(this.subscriber) ?? -1;
    if (index >= 0) subscribers!.splice(index, 1);
  }

  /**
   * Fails boot with a clear error when the outbox table was never created, or when the table of that name
   * is not one (see `TableShapeMismatchError`).
   */
  async assertTableExists(): Promise<void> {
    const { table } = this.get();
    const columns = await this.columnsOf(table);
    if (!columns) throw new OutboxTableMissingError(table.qualified);
    assertColumns('outbox', table, columns);
  }

  /** Fails boot with a clear error when the inbox table was never created, or is not one. */
  async assertInboxTableExists(): Promise<void> {
    if (!(await this.inboxTableExists())) throw new InboxTableMissingError(this.get().inboxStore.table.qualified);
  }

  /**
   * Whether the inbox table exists (a service whose handlers do not use the inbox may have none).
   * @throws TableShapeMismatchError when a table of that name exists but is not an inbox table
   */
  async inboxTableExists(): Promise<boolean> {
    const { table } = this.get().inboxStore;
    const columns = await this.columnsOf(table);
    if (!columns) return false;
    assertColumns('inbox', table, columns);
    return true;
  }

  /** The table's columns, or `undefined` when there is no such table. */
  private async columnsOf(table: OutboxTableName): Promise<ReadonlySet<string> | undefined> {
    const { dataSource, dialect } = this.get();
    if (dialect === 'postgres') {
      const [row] = (await dataSource.query(
        'SELECT to_regclass($1) IS NOT NULL AS found, ARRAY(SELECT attname::text FROM pg_attribute ' +
          'WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped) AS columns',
        [table.qualified],
      )) as Array<{ found: boolean; columns: string[] }>;
      return row?.found ? new Set(row.columns) : undefined;
    }
    const [found] = (await dataSource.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", [table.table])) as unknown[];
    if (!found) return undefined;
    const columns = (await dataSource.query('SELECT name FROM pragma_table_info(?)', [table.table])) as Array<{ name: string }>;
    return new Set(columns.map(({ name }) => name));
  }

  /** `postgres` or `sqlite`: which SQL the stores speak. */
  get dialect(): 'postgres' | 'sqlite' {
    return this.get().dialect;
  }

  get dataSource(): DataSource {
    return this.get().dataSource;
  }

  /** On SQLite, its one connection (the library's transactions take turns on it); else `undefined`. */
  get sqlite(): SqliteConnection | undefined {
    return this.get().sqlite;
  }

  get store(): OutboxStore {
    return this.get().store;
  }

  get table(): OutboxTableName {
    return this.get().table;
  }

  get inboxStore(): InboxStore {
    return this.get().inboxStore;
  }

  private get(): NonNullable<OutboxDatabase['resolved']> {
    if (!this.resolved) this.onModuleInit();
    return this.resolved!;
  }
}

/** The columns the library reads or writes in each of its tables (both dialects). */
const REQUIRED_COLUMNS = {
  outbox: ['seq', 'id', 'event_name', 'event_version', 'payload', 'headers', 'occurred_at', 'created_at', 'available_at', 'status', 'attempts', 'locked_until', 'lease_token', 'last_error', 'sent_at'],
  inbox: ['handler', 'message_id', 'handled_at'],
} as const;

function assertColumns(kind: 'outbox' | 'inbox', table: OutboxTableName, columns: ReadonlySet<string>): void {
  const missing = REQUIRED_COLUMNS[kind].filter((column) => !columns.has(column));
  if (missing.length > 0) throw new TableShapeMismatchError(kind, table.qualified, missing);
}
