import { connectionUrl } from './connection-url';
import { isOutboxRowId } from '../outbox/outbox-row-id';
import { DataSource } from 'typeorm';
import { DEFAULT_OPTIONS } from '../options/default-options';
import { OutboxOperations, type OutboxFilter, type OutboxSelection } from '../outbox/outbox.operations';
import { OutboxTableName, SQL_IDENTIFIER_PATTERN } from '../outbox/outbox-table-name';
import { redactSecrets, redactUrl } from '../util/redact-url';
import { assertKnownOptions, type ParsedArguments, UsageError } from './cli-arguments';
import type { Output } from './output';
import { OutboxChangeInterruptedError } from '../errors/outbox-change-interrupted.error';

const FILTERS: readonly OutboxFilter[] = ['stuck', 'failed', 'unroutable', 'pending', 'skipped', 'sent'];

/** The options of each action, besides `--database-url`, `--schema`, `--table`, `--json` and `--help`. */
const OUTBOX_OPTIONS: Readonly<Record<string, readonly string[]>> = {
  list: ['status', 'limit'],
  retry: ['all-unroutable', 'all-failed', 'all-stuck'],
  skip: [],
};

/** `outbox list|retry|skip …` against the PostgreSQL outbox table. */
export async function outboxCommand({ positional, options }: ParsedArguments, output: Output): Promise<void> {
  const [action, ...ids] = positional;
  if (!action) throw new UsageError('outbox needs an action');
  const known = Object.hasOwn(OUTBOX_OPTIONS, action) ? OUTBOX_OPTIONS[action] : undefined;
  if (!known) throw new UsageError(`unknown outbox action "${action}"`);
  assertKnownOptions(options, `outbox ${action}`, ['database-url', 'schema', 'table', ...known]);
  const schema = typeof options.schema === 'string' ? options.schema : undefined;
  const tableName = typeof options.table === 'string' ? options.table : DEFAULT_OPTIONS.outbox.table;
  for (const identifier of [schema, tableName]) {
    if (identifier !== undefined && !SQL_IDENTIFIER_PATTERN.test(identifier)) throw new UsageError(`"${identifier}" is not a plain SQL identifier`);
  }
  // Usage is checked before connecting: a mistake exits with 2 whether or not the database answers.
  const request = outboxRequest(action, ids, options);
  const url = connectionUrl(options['database-url'], 'database-url', 'DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/postgres');
  const dataSource = new DataSource({ type: 'postgres', url, extra: { max: 1 } });
  try {
    await dataSource.initialize();
  } catch (error) {
    throw new Error(`Cannot connect to ${redactUrl(url)}: ${redactSecrets((error as Error).message, url)}`);
  }
  const table = new OutboxTableName(schema, tableName);
  const operations = new OutboxOperations(dataSource, table);
  try {
    // Said as such, not as PostgreSQL's `relation "…" does not exist`, which names no option.
    const [{ found }] = (await dataSource.query('SELECT to_regclass($1) IS NOT NULL AS found', [table.qualified])) as Array<{ found: boolean }>;
    if (!found) {
      throw new Error(
        `There is no outbox table ${table.qualified} in ${redactUrl(url)}: give the --schema and --table of the module's outbox options ` +
          `(without them, "${DEFAULT_OPTIONS.outbox.table}" in the connection's search path)`,
      );
    }
    switch (request.action) {
      case 'list': {
        const [rows, counts] = [await operations.list(request.status, request.limit), await operations.counts()];
        output.result({ counts, rows }, () => [
          `Outbox: ${counts.pending} pending (${counts.failed} failed at least once), ${counts.unroutable} unroutable, ` +
            `${counts.skipped} skipped, ${counts.sent} sent`,
          ...rows.map(
            (row) =>
              `  ${row.id}  ${row.eventName} v${row.eventVersion}  ${row.status}  ${row.attempts} attempt(s)  ` +
              `${row.status === 'pending' && row.availableAt.getTime() > Date.now() ? `due ${row.availableAt.toISOString()}  ` : ''}${row.lastError ?? ''}`,
          ),
        ]);
        return;
      }
      case 'retry': {
        let retried: string[];
        try {
          retried = await operations.retry(request.selection);
        } catch (error) {
          if (!(error instanceof OutboxChangeInterruptedError)) throw error;
          output.partialFailure(error, { retried: error.changed });
          return;
        }
        const leftAlone = notIn(ids, retried);
        output.result(ids.length > 0 ? { retried, leftAlone } : { retried }, () => [
          `Made ${retried.length} row(s) pending and due: now, or at its own later time (deliverAt, delay) for a row never attempted`,
          ...leftAloneLines(leftAlone, 'already sent'),
        ]);
        // Like `dlq`: a given id that was not changed is a failure (`retry $ID || alert`).
        if (leftAlone.length > 0) process.exitCode = 1;
        return;
      }
      case 'skip': {
        const skipped = await operations.skip({ ids });
        const leftAlone = notIn(ids, skipped);
        output.result({ skipped, leftAlone }, () => [
          `Skipped ${skipped.length} row(s)`,
          ...leftAloneLines(leftAlone, 'already sent or skipped'),
        ]);
        if (leftAlone.length > 0) process.exitCode = 1;
        return;
      }
    }
  } finally {
    await dataSource.destroy();
  }
}

/** Refuses an id that is no UUID in a form PostgreSQL reads (the outbox's ids are UUIDs). */
function assertRowIds(ids: readonly string[]): void {
  const wrong = ids.find((id) => !isOutboxRowId(id));
  if (wrong !== undefined) throw new UsageError(`"${wrong}" is not an outbox row id (a UUID)`);
}

/** The given ids that are not among `changed`, compared in PostgreSQL's own form of a UUID. */
function notIn(ids: readonly string[], changed: readonly string[]): string[] {
  const seen = new Set(changed.map(canonicalUuid));
  return ids.filter((id) => !seen.has(canonicalUuid(id)));
}

/**
 * A UUID as PostgreSQL prints it (lower case, hyphens at 8-4-4-4-12), from any form it accepts (upper
 * case, braces, hyphens left out or elsewhere); anything else as given.
 */
function canonicalUuid(id: string): string {
  const hex = id.replace(/^\{(.*)\}$/, '$1').replace(/-/g, '').toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex)) return id;
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The given rows an action did not change, and the reasons it can have had. */
function leftAloneLines(ids: readonly string[], done: string): string[] {
  if (ids.length === 0) return [];
  return [`Left alone ${ids.length} row(s) (${done}, being published by a relay right now, or not in the outbox):`, ...ids.map((id) => `  ${id}`)];
}

/** What an `outbox` action was asked to do, its arguments checked. */
type OutboxRequest =
  | { readonly action: 'list'; readonly status: OutboxFilter; readonly limit: number }
  | { readonly action: 'retry'; readonly selection: OutboxSelection }
  | { readonly action: 'skip' };

function outboxRequest(action: string, ids: string[], options: ParsedArguments['options']): OutboxRequest {
  switch (action) {
    case 'list': {
      // `outbox list failed` would list the default (stuck) rows: the filter is --status.
      if (ids.length > 0) throw new UsageError(`outbox list takes no arguments (got "${ids[0]}"); give the rows to list with --status`);
      const status = (options.status ?? 'stuck') as OutboxFilter;
      if (!FILTERS.includes(status)) throw new UsageError(`--status must be one of ${FILTERS.join(', ')}`);
      const limit = Number(options.limit ?? 50);
      if (!Number.isSafeInteger(limit) || limit < 1) throw new UsageError('--limit must be a whole number from 1');
      return { action, status, limit };
    }
    case 'retry':
      assertRowIds(ids);
      return { action, selection: selection(options, ids) };
    case 'skip':
      if (ids.length === 0) throw new UsageError('outbox skip needs row ids');
      assertRowIds(ids);
      return { action };
    default:
      throw new UsageError(`unknown outbox action "${action}"`);
  }
}

function selection(options: ParsedArguments['options'], ids: string[]): OutboxSelection {
  const all = (['unroutable', 'failed', 'stuck'] as const).filter((kind) => options[`all-${kind}`] === true);
  if (all.length > 1 || (all.length === 1 && ids.length > 0)) throw new UsageError('give row ids or one --all-* switch');
  if (all.length === 1) return { all: all[0]! };
  if (ids.length === 0) throw new UsageError('give the row ids to act on, or --all-unroutable / --all-failed / --all-stuck');
  return { ids };
}
