/**
 * pgbench, PostgreSQL's own C client, for the workloads that measure PostgreSQL alone (Floor D, ids):
 * where to find it, and running it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { EVENT_NAME, eventBody } from './contract';
import { DATABASE_URL, outboxTable } from './helpers';
import { trackProgram } from './processes';

/** pgbench's path, or undefined when this machine has none (looked up once). */
let pgbenchPath: { path: string | undefined } | undefined;
export function findPgbench(): string | undefined {
  pgbenchPath ??= { path: lookUpPgbench() };
  return pgbenchPath.path;
}

/** PGBENCH, else `pgbench` on the PATH, else the newest /usr/lib/postgresql/<version>/bin/pgbench. */
function lookUpPgbench(): string | undefined {
  if (process.env.PGBENCH) return process.env.PGBENCH;
  if (spawnSync('pgbench', ['--version'], { stdio: 'ignore' }).status === 0) return 'pgbench';
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => join(root, v, 'bin', 'pgbench')).find((path) => existsSync(path));
}

/** A quoted SQL string literal. */
export const quote = (text: string): string => `'${text.replace(/'/g, "''")}'`;

/**
 * A pgbench script: BEGIN, the statements, COMMIT. pgbench substitutes `:name` anywhere, quoted
 * literals included (`::type` casts aside), so none may be in the text.
 */
export function transactionScript(statements: readonly string[]): string {
  const text = ['BEGIN;', ...statements.map((statement) => `${statement};`), 'COMMIT;', ''].join('\n');
  const variable = /(?<!:):[A-Za-z_]/.exec(text);
  if (variable) throw new Error(`the pgbench script would substitute a variable at "${text.slice(variable.index, variable.index + 20)}"`);
  return text;
}

/**
 * Runs `script` with pgbench (`-M prepared`, `concurrency` clients on a thread per core, for `seconds`)
 * against DATABASE_URL.
 */
export async function runPgbenchScript(script: string, concurrency: number, seconds: number): Promise<PgbenchResult> {
  const path = findPgbench();
  if (!path) throw new Error('pgbench not found (set PGBENCH)');
  const dir = mkdtempSync(join(tmpdir(), 'bench-pgbench-'));
  try {
    const file = join(dir, 'transaction.sql');
    writeFileSync(file, script);
    const threads = Math.min(cpus().length, concurrency);
    const args = ['-n', '-M', 'prepared', '-c', String(concurrency), '-j', String(threads), '-T', String(seconds), '-f', file, DATABASE_URL];
    return readPgbenchOutput(await pgbench(path, args));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `publish()`'s outbox INSERT with literal values, for a pgbench script: the same columns, the same
 * handoff lease expression, `available_at` defaulting to now(), `occurred_at` from now(), the id from
 * `idSql`.
 */
export function outboxInsertSql(schema: string, idSql: string): string {
  const headers = JSON.stringify({
    'ie-event-name': EVENT_NAME,
    'ie-event-version': 1,
    'ie-occurred-at': new Date().toISOString(),
    'ie-source-service': 'bench',
    'ie-correlation-id': '6f9619ff-8b86-4011-b42d-00c04fc964ff',
  });
  return (
    `INSERT INTO ${outboxTable(schema)} (id, event_name, event_version, payload, headers, occurred_at, available_at, locked_until, lease_token) ` +
    `VALUES (${idSql}, ${quote(EVENT_NAME)}, 1, ${quote(eventBody(12_345))}, ${quote(headers)}, now(), COALESCE(NULL::timestamptz, now()), ` +
    "clock_timestamp() + 30000 * interval '1 millisecond', '0b6c3f8e-2f4c-4e0a-9d1e-7a5b2c8d9e10'::uuid)"
  );
}

/** Runs pgbench; resolves with its output, rejects with it when it fails. */
function pgbench(path: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    trackProgram(child);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(output) : reject(new Error(`pgbench exited with ${code}:\n${output}`))));
  });
}

/** What a pgbench run reports: committed transactions, their rate, and failed ones. */
export interface PgbenchResult {
  readonly transactions: number;
  readonly tps: number;
  readonly failed: number;
}

function readPgbenchOutput(output: string): PgbenchResult {
  const number = (pattern: RegExp): number => Number(pattern.exec(output)?.[1] ?? NaN);
  const transactions = number(/number of transactions actually processed: (\d+)/);
  // "(without initial connection time)" since PostgreSQL 14, "(excluding connections establishing)" before.
  const tps = number(/tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/);
  if (!Number.isFinite(transactions) || !Number.isFinite(tps)) throw new Error(`could not read pgbench's output:\n${output}`);
  // Printed since PostgreSQL 15; before, a failed transaction aborts its client and pgbench exits non-zero.
  return { transactions, tps, failed: number(/number of failed transactions: (\d+)/) || 0 };
}
