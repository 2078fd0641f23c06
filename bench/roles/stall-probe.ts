/**
 * An idle watcher of the machine, run beside each paced run: it does none of the pipeline's work, so
 * whatever delays it delays every process of the pipeline too.
 * - Every `timerMs` it sets a timer of `timerMs` and notes how late the timer fired: the time the
 *   process wanted to run and could not (the cores were taken, or the virtual machine was paused).
 * - Every `syncEveryMs` it rewrites 8 kB of a file in `dir` and waits for `fdatasync`, as a commit waits
 *   for PostgreSQL's WAL flush and a confirm for RabbitMQ's: a slow flush holds up every commit.
 * Both are sampled from the `go` message to `stop`, each as [start, ms] on the clock of the pipeline's
 * commit and handled times (`now()`): a timer's start is when it was due, a flush's when its write began.
 */
import { close, fdatasync, open, rm, write } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Role } from '../child';
import { now } from '../lib/helpers';
import { PROBE_SYNC_EVERY_MS, PROBE_TIMER_MS } from '../lib/machine-stalls';

interface Args {
  /** Where the flushed file goes: a directory on the disk the database and broker write to. */
  dir: string;
  timerMs?: number;
  syncEveryMs?: number;
}

export const run: Role = async (raw, io) => {
  const args = raw as unknown as Args;
  const timerMs = args.timerMs ?? PROBE_TIMER_MS;
  const syncEveryMs = args.syncEveryMs ?? PROBE_SYNC_EVERY_MS;
  const file = join(args.dir, `stall-probe-${process.pid}.bin`);
  const fd = await promisify(open)(file, 'w');
  const page = Buffer.alloc(8192, 1);
  // Flat [start, ms late] and [start, ms of write + fdatasync] pairs.
  const late: number[] = [];
  const syncs: number[] = [];
  let failedSyncs = 0;
  let stopped = false;

  const tick = (due: number): void => {
    if (stopped) return;
    late.push(due, Math.max(0, now() - due));
    const next = now() + timerMs;
    setTimeout(() => tick(next), timerMs);
  };
  // Write + fdatasync, one after the other, every syncEveryMs; the one in flight is awaited on stop.
  let flushing: Promise<void> = Promise.resolve();
  const flushOnce = async (): Promise<void> => {
    const started = now();
    try {
      await promisify(write)(fd, page, 0, page.length, 0);
      await promisify(fdatasync)(fd);
      syncs.push(started, now() - started);
    } catch {
      failedSyncs++;
    }
  };
  const sync = (): void => {
    if (stopped) return;
    const started = now();
    flushing = flushOnce().then(() => {
      setTimeout(sync, Math.max(0, syncEveryMs - (now() - started)));
    });
  };

  io.send({ type: 'ready' });
  await io.next('go');
  tick(now());
  sync();
  await io.next('stop');
  stopped = true;
  await flushing;
  await promisify(close)(fd);
  await promisify(rm)(file, { force: true });
  return { late: Float64Array.from(late), syncs: Float64Array.from(syncs), failedSyncs };
};
