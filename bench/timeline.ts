/**
 * Reads one timeline that `npm run bench -- --only paced --timelines` wrote and prints it in slices of
 * time: per slice, the events committed in it, their median and longest commit → handler latency, how
 * many took over 25 ms, and the longest timer delay and fdatasync the idle stall probe saw in it. A tail
 * made of a few slices that line up with probe stalls is the machine's; one spread over every slice is
 * the pipeline's own queueing.
 *
 *   node dist/bench-build/bench/timeline.js bench/results/<stamp>-timelines/<run>.json [slice ms, default 500]
 */
import { readFileSync } from 'node:fs';
import { percentile } from './lib/helpers';
import { STALL_MS } from './lib/machine-stalls';

interface Timeline {
  counted: number;
  committedAt: number[];
  handledAt: number[];
  probeLate: number[];
  probeSyncs: number[];
}

const TARGET_MS = 25;

function main(): void {
  const [file, sliceArg] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node dist/bench-build/bench/timeline.js <timeline.json> [slice ms]');
    process.exit(2);
  }
  const sliceMs = Number(sliceArg ?? 500);
  if (!Number.isFinite(sliceMs) || sliceMs <= 0) {
    console.error(`slice ms must be a positive number, not ${sliceArg}`);
    process.exit(2);
  }
  const timeline = JSON.parse(readFileSync(file, 'utf8')) as Timeline;
  // Events that never committed or were never handled (a failed run) have a time of 0: left out.
  const done = (i: number) => timeline.committedAt[i]! > 0 && timeline.handledAt[i]! > 0;
  let start = Infinity;
  let end = 0;
  let warmStart = Infinity;
  for (let i = 0; i < timeline.committedAt.length; i++) {
    if (!done(i)) continue;
    if (i < timeline.counted) {
      start = Math.min(start, timeline.committedAt[i]!);
      end = Math.max(end, timeline.handledAt[i]!);
    } else warmStart = Math.min(warmStart, timeline.committedAt[i]!);
  }
  if (!Number.isFinite(start)) {
    console.error(`${file}: no counted event was committed and handled`);
    process.exit(1);
  }
  const slices = new Map<number, { latencies: number[]; late: number; sync: number }>();
  const slice = (t: number) => {
    const key = Math.floor((t - start) / sliceMs);
    let entry = slices.get(key);
    if (!entry) slices.set(key, (entry = { latencies: [], late: 0, sync: 0 }));
    return entry;
  };
  const all: number[] = [];
  for (let i = 0; i < timeline.counted; i++) {
    if (!done(i)) continue;
    const latency = timeline.handledAt[i]! - timeline.committedAt[i]!;
    all.push(latency);
    slice(timeline.committedAt[i]!).latencies.push(latency);
  }
  // A probe sample is [start, ms], filed under the slice it started in.
  const probe = (pairs: number[], field: 'late' | 'sync') => {
    for (let i = 0; i < pairs.length; i += 2) {
      if (pairs[i]! + pairs[i + 1]! < start || pairs[i]! > end) continue;
      const entry = slice(pairs[i]!);
      entry[field] = Math.max(entry[field], pairs[i + 1]!);
    }
  };
  probe(timeline.probeLate, 'late');
  probe(timeline.probeSyncs, 'sync');

  all.sort((a, b) => a - b);
  const over = all.filter((ms) => ms > TARGET_MS).length;
  console.log(
    `${file}\n${all.length} of ${timeline.counted} counted events committed and handled` +
      (Number.isFinite(warmStart) ? `, the first of them ${((start - warmStart) / 1_000).toFixed(1)} s after the warm-up's first commit` : '') +
      `: p50 ${percentile(all, 50).toFixed(1)} / p99 ${percentile(all, 99).toFixed(1)} / max ${all.at(-1)!.toFixed(1)} ms; ` +
      `${over} over ${TARGET_MS} ms\n`,
  );
  console.log('slices of the counted events, by commit time from the first of them:');
  console.log('  from ms  events    p50 ms    max ms  >25 ms   probe: timer late / fdatasync, ms');
  for (const [key, entry] of [...slices].sort((a, b) => a[0] - b[0])) {
    const sorted = entry.latencies.sort((a, b) => a - b);
    const mark = entry.late >= STALL_MS || entry.sync >= STALL_MS ? '  ← stall' : '';
    console.log(
      `${String(key * sliceMs).padStart(9)} ${String(sorted.length).padStart(7)} ${(sorted.length ? percentile(sorted, 50).toFixed(1) : '–').padStart(9)} ` +
        `${(sorted.length ? sorted.at(-1)!.toFixed(1) : '–').padStart(9)} ${String(sorted.filter((ms) => ms > TARGET_MS).length).padStart(7)}   ` +
        `${entry.late.toFixed(1).padStart(10)} / ${entry.sync.toFixed(1)}${mark}`,
    );
  }
}

main();
