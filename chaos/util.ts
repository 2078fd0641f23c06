import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { Client } from 'pg';

const startedAt = Date.now();

/** One line of the suite's own output, prefixed with the seconds since it started. */
export function log(message: string): void {
  process.stdout.write(`[chaos ${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)}s] ${message}\n`);
}

/**
 * Waits a fixed time. Used only to place faults in time and to hold a fault (a broker that stays down
 * for a while); every wait for something to happen polls a condition instead (`waitFor`).
 */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function randomBetween(minMs: number, maxMs: number): number {
  return Math.round(minMs + Math.random() * (maxMs - minMs));
}

/**
 * Polls `probe` until it returns something other than `undefined`/`false`, or throws after `timeoutMs`
 * with the last error the probe threw, if any.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  { timeoutMs, intervalMs = 200 }: { timeoutMs: number; intervalMs?: number },
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const cause = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
    }
    await pause(intervalMs);
  }
}

/** A free TCP port on loopback (free now; the caller binds it soon after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly timeoutMs?: number;
}

/** Runs a command to completion; rejects with its output when it fails. */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      [...args],
      { env: options.env ?? process.env, cwd: options.cwd, timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`${command} ${args.join(' ')} failed (${error.code ?? error.signal ?? error.message}):\n${stdout}${stderr}`.trim()));
        } else {
          resolve(stdout);
        }
      },
    );
  });
}

/**
 * One query on a connection of its own: the suite reads the databases while PostgreSQL restarts and
 * services die, so it keeps no connection open in between.
 */
export async function query<R extends Record<string, unknown>>(databaseUrl: string, sql: string, params: unknown[] = []): Promise<R[]> {
  const client = new Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
