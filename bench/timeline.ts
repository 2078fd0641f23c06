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
  const timeline = JSON.parse(readFileSync(file, 'utf8')) as Timeline;
  const start = Math.min(...timeline.committedAt.slice(0, timeline.counted));
  const slices = new Map<number, { latencies: number[]; late: number; sync: number }>();
  const slice = (t: number) => {
    const key = Math.floor((t - start) / sliceMs);
    let entry = slices.get(key);
    if (!entry) slices.set(key, (entry = { latencies: [], late: 0, sync: 0 }));
    return entry;
  };
  const all: number[] = [];
  for (let i = 0; i < timeline.counted; i++) {
    const latency = timeline.handledAt[i]! - timeline.committedAt[i]!;
    all.push(latency);
    slice(timeline.committedAt[i]!).latencies.push(latency);
  }
  const end = Math.max(...timeline.handledAt.slice(0, timeline.counted));
  const probe = (pairs: number[], field: 'late' | 'sync') => {
    for (let i = 0; i < pairs.length; i += 2) {
      if (pairs[i]! < start || pairs[i]! > end) continue;
      const entry = slice(pairs[i]!);
      entry[field] = Math.max(entry[field], pairs[i + 1]!);
    }
  };
  probe(timeline.probeLate, 'late');
  probe(timeline.probeSyncs, 'sync');

  all.sort((a, b) => a - b);
  const over = all.filter((ms) => ms > TARGET_MS).length;
  console.log(
    `${file}\n${timeline.counted} events: p50 ${percentile(all, 50).toFixed(1)} / p99 ${percentile(all, 99).toFixed(1)} / max ${all.at(-1)!.toFixed(1)} ms; ` +
      `${over} over ${TARGET_MS} ms\n`,
  );
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
