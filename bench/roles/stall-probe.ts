/**
 * An idle watcher of the machine, run beside each paced run: it does none of the pipeline's work, so
 * whatever delays it delays every process of the pipeline too.
 * - Every `timerMs` it sets a timer of `timerMs` and notes how late the timer fired: the time the
 *   process wanted to run and could not (the cores were taken, or the virtual machine was paused).
 * - Every `syncEveryMs` it rewrites 8 kB of a file in `dir` and waits for `fdatasync`, as a commit waits
 *   for PostgreSQL's WAL flush and a confirm for RabbitMQ's: a slow flush holds up every commit.
 * Both are sampled from the `go` message to `stop`, and returned with their times (`now()`, the clock
 * of the pipeline's commit and handled times), so a slow stretch of events can be laid beside them.
 */
import { closeSync, fdatasync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Role } from '../child';
import { now } from '../lib/helpers';

interface Args {
  /** A directory on the disk the database and broker write to. */
  dir: string;
  timerMs?: number;
  syncEveryMs?: number;
}

export const run: Role = async (raw, io) => {
  const args = raw as unknown as Args;
  const timerMs = args.timerMs ?? 20;
  const syncEveryMs = args.syncEveryMs ?? 100;
  const file = join(args.dir, `stall-probe-${process.pid}.bin`);
  const fd = openSync(file, 'w');
  const page = Buffer.alloc(8192, 1);
  // [time, ms late] and [time, ms of write + fdatasync], flat.
  const late: number[] = [];
  const syncs: number[] = [];
  let stopped = false;

  const tick = (expected: number): void => {
    if (stopped) return;
    const t = now();
    late.push(t, Math.max(0, t - expected));
    const next = now() + timerMs;
    setTimeout(() => tick(next), timerMs);
  };
  const sync = (): void => {
    if (stopped) return;
    const started = now();
    writeSync(fd, page, 0, page.length, 0);
    fdatasync(fd, () => {
      const ended = now();
      syncs.push(started, ended - started);
      setTimeout(sync, Math.max(0, syncEveryMs - (ended - started)));
    });
  };

  io.send({ type: 'ready' });
  await io.next('go');
  tick(now());
  sync();
  await io.next('stop');
  stopped = true;
  // Let a flush in progress finish before the file goes.
  await new Promise((resolve) => setTimeout(resolve, syncEveryMs));
  closeSync(fd);
  rmSync(file, { force: true });
  return { late: Float64Array.from(late), syncs: Float64Array.from(syncs) };
};
