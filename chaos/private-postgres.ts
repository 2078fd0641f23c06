import { chownSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { freePort, log, query, run, waitFor } from './util';

const BIN = process.env.CHAOS_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/**
 * A throwaway PostgreSQL cluster of the suite's own, on a free port of loopback, in `root/pg`: restarting
 * it never touches the shared server on 5432. initdb refuses to run as root, so the cluster belongs to
 * the `postgres` system user (`runuser -u postgres`). `fsync=off`: the cluster is deleted at the end and is
 * only ever restarted cleanly (`pg_ctl restart -m fast` writes everything out before stopping).
 */
export class PrivatePostgres {
  private running = false;

  private constructor(
    private readonly dataDir: string,
    private readonly logFile: string,
    readonly port: number,
  ) {}

  static async start(root: string): Promise<PrivatePostgres> {
    const dir = path.join(root, 'pg');
    mkdirSync(dir, { recursive: true });
    const uid = Number((await run('id', ['-u', 'postgres'])).trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).trim());
    chownSync(dir, uid, gid);
    const cluster = new PrivatePostgres(path.join(dir, 'data'), path.join(dir, 'postgres.log'), await freePort());
    await cluster.asPostgres('initdb', ['-D', cluster.dataDir, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync', '--no-instructions']);
    const settings = [
      `-p ${cluster.port}`,
      `-k ${dir}`,
      '-c listen_addresses=127.0.0.1',
      '-c fsync=off',
      '-c max_connections=200',
    ].join(' ');
    await cluster.asPostgres('pg_ctl', ['-D', cluster.dataDir, '-l', cluster.logFile, '-w', '-t', '60', '-o', settings, 'start']);
    cluster.running = true;
    try {
      await waitFor('the private PostgreSQL to accept connections', async () => (await query(cluster.url('postgres'), 'SELECT 1 AS ok')).length === 1, {
        timeoutMs: 30_000,
      });
    } catch (error) {
      await cluster.stop().catch(() => undefined);
      throw error;
    }
    log(`private PostgreSQL 15 on 127.0.0.1:${cluster.port} (data in ${cluster.dataDir})`);
    return cluster;
  }

  url(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  async createDatabase(name: string): Promise<string> {
    if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`Not a plain database name: ${name}`);
    await query(this.url('postgres'), `CREATE DATABASE ${name}`);
    return this.url(name);
  }

  /** `pg_ctl restart -m fast`: open connections are terminated, the server is back when this resolves. */
  async restart(): Promise<void> {
    await this.asPostgres('pg_ctl', ['-D', this.dataDir, '-l', this.logFile, '-w', '-t', '60', '-m', 'fast', 'restart']);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    await this.asPostgres('pg_ctl', ['-D', this.dataDir, '-w', '-t', '30', '-m', 'immediate', 'stop']);
  }

  private asPostgres(program: string, args: string[]): Promise<string> {
    return run('runuser', ['-u', 'postgres', '--', path.join(BIN, program), ...args], { timeoutMs: 90_000 });
  }
}
