/**
 * Shared helpers of the benchmark harness: the clock, statistics, namespacing of everything a run
 * creates (schemas, exchanges, queues) and its cleanup, and the database/broker plumbing workloads share.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import * as amqp from 'amqplib';
import { Client } from 'pg';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const RABBITMQ_URL = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

// ---------------------------------------------------------------------------------------------------
// Time

/**
 * Wall-clock milliseconds with sub-millisecond resolution, comparable across the processes of one
 * machine (`performance.timeOrigin` is the process start on the system clock, `performance.now()` the
 * monotonic time since): used for "committed in one process, handled in another" latencies.
 */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------------
// Statistics

/** Nearest-rank percentile of an ascending array (p in 0..100). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function latencySummary(values: number[]): LatencySummary {
  const sorted = Float64Array.from(values).sort();
  return {
    count: sorted.length,
    p50: percentile(sorted, 50),
    p95: percentile(sorted, 95),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1]! : NaN,
  };
}

/** Median and spread of one metric over the rounds of a run. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  /** Half the min–max range, as a percentage of the median. */
  spreadPct: number;
  rounds: number[];
}

export function spread(values: number[]): Spread {
  const finite = values.filter((v) => Number.isFinite(v));
  const sorted = [...finite].sort((a, b) => a - b);
  const n = sorted.length;
  const median = n === 0 ? NaN : n % 2 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  const min = n ? sorted[0]! : NaN;
  const max = n ? sorted[n - 1]! : NaN;
  return { median, min, max, spreadPct: n > 1 && median ? ((max - min) / 2 / Math.abs(median)) * 100 : 0, rounds: values };
}

// ---------------------------------------------------------------------------------------------------
// Namespacing and cleanup

/**
 * Names for one variant run: a schema, an exchange, a service name and a queue prefix no other run
 * (or test) uses. Everything is registered with `Resources` and removed after the variant.
 */
export class Namespace {
  static readonly runId = randomBytes(3).toString('hex');
  private static counter = 0;

  readonly key: string;
  readonly schema: string;
  readonly exchange: string;
  readonly serviceName: string;

  constructor(tag: string) {
    this.key = `${Namespace.runId}_${(++Namespace.counter).toString(36)}_${tag.replace(/[^a-z0-9]/g, '').slice(0, 12)}`;
    this.schema = `bench_${this.key}`;
    this.exchange = `bench-${this.key}`;
    this.serviceName = `bench-${this.key}`.replace(/_/g, '-');
  }

  queue(name: string): string {
    return `${this.serviceName}.${name}`;
  }
}

/** Every schema, exchange and queue the harness creates, so that they are removed whatever happens. */
export class Resources {
  private readonly schemas = new Set<string>();
  private readonly exchanges = new Set<string>();
  private readonly queues = new Set<string>();

  schema(name: string): string {
    this.schemas.add(name);
    return name;
  }

  exchange(name: string): string {
    this.exchanges.add(name);
    return name;
  }

  queue(...names: string[]): string {
    for (const name of names) this.queues.add(name);
    return names[0]!;
  }

  /**
   * Removes everything registered, and forgets it. Never throws: returns (and names on stderr) what could
   * not be removed (the names carry this run's id: `bench_<id>_…` schemas, `bench-<id>-…` queues and
   * exchanges), which the caller counts as a failure of the run.
   */
  async cleanup(): Promise<string[]> {
    const failed: string[] = [];
    const attempt = async (what: string, work: () => Promise<unknown>) => {
      try {
        await work();
      } catch (error) {
        failed.push(`${what} (${(error as Error)?.message ?? String(error)})`);
      }
    };
    if (this.queues.size + this.exchanges.size > 0) {
      await attempt('the RabbitMQ connection for cleaning up', async () => {
        const connection = await amqp.connect(RABBITMQ_URL);
        connection.on('error', () => undefined);
        try {
          for (const name of this.queues) await attempt(`queue ${name}`, () => deleteOn(connection, (channel) => channel.deleteQueue(name)));
          for (const name of this.exchanges) await attempt(`exchange ${name}`, () => deleteOn(connection, (channel) => channel.deleteExchange(name)));
        } finally {
          await connection.close().catch(() => undefined);
        }
      });
    }
    if (this.schemas.size > 0) {
      await attempt('the PostgreSQL connection for cleaning up', () =>
        withDb(async (db) => {
          for (const name of this.schemas) await attempt(`schema ${name}`, () => db.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`));
        }),
      );
    }
    this.schemas.clear();
    this.exchanges.clear();
    this.queues.clear();
    if (failed.length > 0) console.error(`cleanup: could not remove ${failed.join('; ')}`);
    return failed;
  }
}

/** Runs one deletion on a channel of its own (a failed one closes its channel). */
async function deleteOn(connection: amqp.ChannelModel, work: (channel: amqp.Channel) => Promise<unknown>): Promise<void> {
  const channel = await connection.createChannel();
  // A channel the broker closes emits 'error': without a listener, amqplib would throw it out of the socket.
  channel.on('error', () => undefined);
  await work(channel);
  await channel.close().catch(() => undefined);
}

// ---------------------------------------------------------------------------------------------------
// Database

export async function withDb<T>(work: (db: Client) => Promise<T>): Promise<T> {
  const db = new Client({ connectionString: DATABASE_URL });
  await db.connect();
  try {
    return await work(db);
  } finally {
    await db.end();
  }
}

export const outboxTable = (schema: string): string => `"${schema}"."integration_events_outbox"`;
export const inboxTable = (schema: string): string => `"${schema}"."integration_events_inbox"`;

// ---------------------------------------------------------------------------------------------------
// Checks

/** A count the harness verified: a run whose counts are off fails (exit code 1), however fast it was. */
export interface Check {
  what: string;
  expected: number | string;
  actual: number | string;
  ok: boolean;
}

export function check(what: string, expected: number | string, actual: number | string): Check {
  return { what, expected, actual, ok: expected === actual };
}

/** Per-message handler calls as counted by a consumer process. */
export interface HandledCounts {
  /** Messages handled at least once. */
  distinct: number;
  /** Handler calls beyond the first, summed over messages. */
  duplicates: number;
  /** Messages whose number was outside the expected range. */
  unexpected: number;
}

export function countChecks(label: string, expected: number, counts: HandledCounts): Check[] {
  return [
    check(`${label}: messages handled (none lost)`, expected, counts.distinct),
    check(`${label}: duplicate handler calls`, 0, counts.duplicates),
    check(`${label}: unexpected messages`, 0, counts.unexpected),
  ];
}

/**
 * Messages still in the given queues (ready ones: run once their consumers stopped, when every message
 * handled was acked and anything left over is a duplicate, a retry or a dead letter). A queue that
 * does not exist counts as empty.
 */
export async function messagesLeft(queues: readonly string[]): Promise<number> {
  const connection = await amqp.connect(RABBITMQ_URL);
  connection.on('error', () => undefined);
  try {
    let left = 0;
    for (const queue of queues) {
      // A missing queue closes its channel (an 'error' event, listened to): one channel per look.
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      const found = await channel.checkQueue(queue).catch(() => undefined);
      left += found?.messageCount ?? 0;
      if (found) await channel.close();
    }
    return left;
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/** Commit → handler latencies (ms) of messages `from`…`to - 1`. */
export function latencies(committedAt: Float64Array, handledAt: Float64Array, from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i < to; i++) {
    const c = committedAt[i]!;
    const h = handledAt[i]!;
    if (c > 0 && h > 0) out.push(h - c);
  }
  return out;
}

export function lastOf(values: Float64Array, from: number, to: number): number {
  let last = 0;
  for (let i = from; i < to; i++) if (values[i]! > last) last = values[i]!;
  return last;
}
