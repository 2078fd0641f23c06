/**
 * The parent's side of the stall probe (`roles/stall-probe.ts`): started beside a paced run, it tells
 * how often, and how long, the machine itself stalled while that run went on, so that a round's tail can
 * be told apart from the pipeline's own latency. With --timelines, the run's per-event times and the
 * probe's samples are also written to a file, to lay one beside the other.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChildHandle, type HarnessContext } from './processes';

/** A timer this late, or a flush this slow, counts as a stall: most of the paced target's 25 ms. */
export const STALL_MS = 20;
/** The probe's timer period, and how often it flushes (ms). */
export const PROBE_TIMER_MS = 20;
export const PROBE_SYNC_EVERY_MS = 100;

export interface StallSummary {
  /** Probe samples (timer or flush) of at least STALL_MS; one pause may give one of each. */
  'stall.count': number;
  /** The most the probe's timer was late (ms). */
  'stall.timerMaxMs': number;
  /** The slowest 8 kB write + fdatasync (ms). */
  'stall.syncMaxMs': number;
}

export interface ProbeSamples {
  /** Flat [when the timer was due, ms late] pairs. */
  late: Float64Array;
  /** Flat [when the write began, ms of write + fdatasync] pairs. */
  syncs: Float64Array;
  /** Flushes that failed (not in `syncs`). */
  failedSyncs: number;
}

export class MachineStalls {
  private constructor(
    private readonly child: ChildHandle,
    private readonly dir: string,
  ) {}

  /**
   * Starts the probe (idle until `go`). Its flushes go to the temporary directory (`TMPDIR`), which
   * should be on the database's disk: not a tmpfs, where a flush costs nothing.
   */
  static async start(harness: HarnessContext, label: string): Promise<MachineStalls> {
    const dir = tmpdir();
    return new MachineStalls(await ChildHandle.start(harness, 'stall-probe', `${label}-stall-probe`, { dir }, { profile: false }), dir);
  }

  go(): void {
    this.child.send({ type: 'go' });
  }

  async stop(): Promise<ProbeSamples> {
    const result = await this.child.stop();
    if ((result.failedSyncs as number) > 0) console.warn(`stall probe: ${String(result.failedSyncs)} flushes failed in ${this.dir}`);
    return { late: result.late as Float64Array, syncs: result.syncs as Float64Array, failedSyncs: result.failedSyncs as number };
  }

  /** Kills the probe (a failed run) and removes the file it flushes. */
  kill(): void {
    this.child.kill();
    rmSync(join(this.dir, `stall-probe-${this.child.pid}.bin`), { force: true });
  }

  /** What the probe saw in samples overlapping `from`…`to` (the clock of `now()`). */
  static summarize(samples: ProbeSamples, from: number, to: number): StallSummary {
    let count = 0;
    const maxOf = (pairs: Float64Array): number => {
      let max = 0;
      for (let i = 0; i < pairs.length; i += 2) {
        if (pairs[i]! + pairs[i + 1]! < from || pairs[i]! > to) continue;
        const ms = pairs[i + 1]!;
        if (ms >= STALL_MS) count++;
        if (ms > max) max = ms;
      }
      return max;
    };
    return { 'stall.timerMaxMs': maxOf(samples.late), 'stall.syncMaxMs': maxOf(samples.syncs), 'stall.count': count };
  }
}

/** With --timelines: one run's commit and handled times and the probe's samples, as JSON. */
export function writeTimeline(
  harness: HarnessContext,
  label: string,
  timeline: { counted: number; committedAt: Float64Array; handledAt: Float64Array; probe: ProbeSamples },
): void {
  if (!harness.timelinesDir) return;
  mkdirSync(harness.timelinesDir, { recursive: true });
  const plain = (array: Float64Array): number[] => Array.from(array);
  writeFileSync(
    join(harness.timelinesDir, `${label}.json`),
    JSON.stringify({
      note:
        'times in ms on the clock of performance.timeOrigin + performance.now(); events [0, counted) are the counted ones, the rest the warm-up; ' +
        "probe pairs are [start, ms]: a timer's start is when it was due, a flush's when its write began",
      counted: timeline.counted,
      committedAt: plain(timeline.committedAt),
      handledAt: plain(timeline.handledAt),
      probeLate: plain(timeline.probe.late),
      probeSyncs: plain(timeline.probe.syncs),
    }),
  );
}
