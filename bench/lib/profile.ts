/**
 * With --cpu-prof, our library's processes write V8 CPU profiles; this turns them into a readable
 * summary: where the CPU went, by package and by function (self time, and inclusive time of the
 * library's own functions), per process role (rounds merged).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

/** Which package a script URL belongs to: "ours:<file>", a node_modules package, "node:…" or the bench. */
function owner(url: string): string {
  if (!url) return 'v8/native';
  const lib = /libs\/integration-events\/dist\/(.+)\.js$/.exec(url);
  if (lib) return `ours`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return 'node (core)';
  if (url.includes('/bench-build/')) return 'bench harness';
  return url;
}

function where(frame: CallFrame): string {
  const lib = /libs\/integration-events\/dist\/(.+)\.js$/.exec(frame.url);
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(.+)$/.exec(frame.url);
  if (lib) return `${frame.functionName || '(anonymous)'} libs/integration-events/src/${lib[1]}.ts:${sourceLine(frame.url, frame.lineNumber)}`;
  const file = pkg ? `${pkg[1]}/${pkg[2]}` : frame.url.replace(/^file:\/\//, '').replace(/^.*\/bench-build\//, '');
  return `${frame.functionName || '(anonymous)'} ${file}:${frame.lineNumber + 1}`;
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const sourceMaps = new Map<string, Array<number | undefined>>();

/**
 * The TypeScript line (1-based) of a line of the library's dist/*.js, from its source map (the first
 * mapped segment of the generated line); '?' without one.
 */
function sourceLine(url: string, generatedLine: number): string {
  const path = url.replace(/^file:\/\//, '');
  let lines = sourceMaps.get(path);
  if (!lines) {
    lines = [];
    try {
      const map = JSON.parse(readFileSync(`${path}.map`, 'utf8')) as { mappings: string };
      let original = 0;
      for (const segments of map.mappings.split(';')) {
        let first: number | undefined;
        for (const segment of segments.split(',')) {
          if (!segment) continue;
          const values: number[] = [];
          let value = 0;
          let shift = 0;
          for (const char of segment) {
            const digit = BASE64.indexOf(char);
            value += (digit & 31) << shift;
            if (digit & 32) shift += 5;
            else {
              values.push(value & 1 ? -(value >>> 1) : value >>> 1);
              value = 0;
              shift = 0;
            }
          }
          if (values.length >= 4) {
            original += values[2]!;
            first ??= original;
          }
        }
        lines.push(first === undefined ? undefined : first + 1);
      }
    } catch {
      // no map: leave every line unknown
    }
    sourceMaps.set(path, lines);
  }
  return String(lines[generatedLine] ?? `?(js ${generatedLine + 1})`);
}

interface Totals {
  totalUs: number;
  idleUs: number;
  gcUs: number;
  byOwner: Map<string, number>;
  selfByFunction: Map<string, number>;
  inclusiveOurs: Map<string, number>;
}

function accumulate(profile: CpuProfile, totals: Totals): void {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    const node = byId.get(id)!;
    const name = node.callFrame.functionName;
    totals.totalUs += us;
    if (name === '(idle)') {
      totals.idleUs += us;
      return;
    }
    if (name === '(garbage collector)') totals.gcUs += us;
    const who = SPECIAL.has(name) ? name : owner(node.callFrame.url);
    totals.byOwner.set(who, (totals.byOwner.get(who) ?? 0) + us);
    const fn = SPECIAL.has(name) ? name : where(node.callFrame);
    totals.selfByFunction.set(fn, (totals.selfByFunction.get(fn) ?? 0) + us);
    // Inclusive time of our library's functions: each function once per stack.
    const seen = new Set<string>();
    for (let cursor: number | undefined = id; cursor !== undefined; cursor = parent.get(cursor)) {
      const frame = byId.get(cursor)!.callFrame;
      if (!frame.url.includes('libs/integration-events/dist/')) continue;
      const key = where(frame);
      if (seen.has(key)) continue;
      seen.add(key);
      totals.inclusiveOurs.set(key, (totals.inclusiveOurs.get(key) ?? 0) + us);
    }
  });
}

function top(map: Map<string, number>, busyUs: number, n: number): string[] {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([key, us]) => `    ${((us / busyUs) * 100).toFixed(1).padStart(5)} %  ${(us / 1e6).toFixed(2).padStart(7)} s  ${key}`);
}

function profilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...profilesUnder(path));
    else if (entry.endsWith('.cpuprofile')) out.push(path);
  }
  return out;
}

/** A text summary of every profile under `dir`, grouped by role (the label without its round). */
export function summarizeProfiles(dir: string): string {
  const groups = new Map<string, string[]>();
  for (const file of profilesUnder(dir)) {
    const label = relative(dir, file).split('/')[0]!.replace(/-r\d+(?=-|$)/, '');
    groups.set(label, [...(groups.get(label) ?? []), file]);
  }
  const out: string[] = [];
  for (const [label, files] of [...groups.entries()].sort()) {
    const totals: Totals = { totalUs: 0, idleUs: 0, gcUs: 0, byOwner: new Map(), selfByFunction: new Map(), inclusiveOurs: new Map() };
    for (const file of files) accumulate(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, totals);
    const busy = totals.totalUs - totals.idleUs;
    out.push(
      `${label} (${files.length} profile${files.length > 1 ? 's' : ''}): busy ${(busy / 1e6).toFixed(1)} s of ${(totals.totalUs / 1e6).toFixed(1)} s, GC ${((totals.gcUs / busy) * 100).toFixed(1)} % of busy`,
      '  self time by package (% of busy):',
      ...top(totals.byOwner, busy, 12),
      '  self time by function:',
      ...top(totals.selfByFunction, busy, 25),
      '  inclusive time of the library\'s functions (dist/*.js lines):',
      ...top(totals.inclusiveOurs, busy, 25),
      '',
    );
  }
  return out.join('\n');
}
