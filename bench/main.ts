/**
 * `npm run bench`: every workload of issue 6, ours and the baselines in the same run, alternating,
 * several rounds; prints a table (median and spread of the rounds), the targets, and writes
 * bench/results/<timestamp>.json. Exits 1 when a count is off (an event lost or handled twice, a
 * failed transaction...) or a workload failed, however fast it was. See bench/README.md.
 */
import 'reflect-metadata';
import { execSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { join, relative, resolve } from 'node:path';
import * as amqp from 'amqplib';
import { DATABASE_URL, Namespace, RABBITMQ_URL, Resources, withDb, type Check } from './lib/helpers';
import { CpuMeter } from './lib/cpu';
import { killChildren } from './lib/processes';
import { summarizeProfiles } from './lib/profile';
import { renderCpuTable, renderTable, renderTargets, type Options, type Row, type Runs, type Target, type VariantRun, type Workload } from './lib/report';
import { backlog } from './workloads/backlog';
import { broker } from './workloads/broker';
import { floor } from './workloads/floor';
import { ids } from './workloads/ids';
import { inbox } from './workloads/inbox';
import { memory } from './workloads/memory';
import { orders } from './workloads/orders';
import { paced } from './workloads/paced';
import { relay } from './workloads/relay';
import { retry } from './workloads/retry';
import { steady } from './workloads/steady';

const ROOT = resolve(__dirname, '..', '..', '..');
/** Issue 6's workloads, run by default (memory only with --big). */
const DEFAULT = [broker, steady, floor, paced, backlog, inbox];
/** The former bench:relay / bench:orders / bench:retry, and the message ids' cost, with --only (or --all). */
const FORMER = [relay, orders, retry, ids];
const ALL: Workload[] = [...DEFAULT, memory, ...FORMER];

/**
 * Sized so that the default run takes about 10 minutes on the 2-core machine of issue 6 when it is quiet
 * (two to three times that under other load); --full gives issue 6's sizes.
 */
const DEFAULTS: Options = {
  rounds: 3,
  transactions: 5_000,
  warmup: 200,
  concurrency: 16,
  poolMax: 20,
  floorSeconds: 8,
  rate: 1_000,
  lowRate: 200,
  sweepRates: [],
  pacedSeconds: 10,
  pacedWarmupSeconds: 3,
  backlog: 30_000,
  backlogInbox: false,
  brokerMessages: 30_000,
  inboxMessages: 5_000,
  bigRows: 1_000_000,
  prefetch: 50,
  batchSize: 200,
  window: 1_000,
  relayRows: 20_000,
  orders: 3_000,
  retryFailing: 1_000,
  retryRate: 200,
  idsRows: 2_000_000,
  idsSeconds: 10,
  only: undefined,
  big: false,
  cpuProf: false,
  timelines: false,
  poolIdleMs: 0,
};

/** Issue 6's sizes: 20,000 transactions, a 100,000-row backlog, and the paced sweep (about 18 minutes on 2 quiet cores). */
const FULL: Partial<Options> = {
  transactions: 20_000,
  backlog: 100_000,
  brokerMessages: 100_000,
  inboxMessages: 20_000,
  sweepRates: [400, 600, 800],
};

/** A smoke run: every workload, small, 2 rounds (numbers too short-lived to be worth much). */
const QUICK: Partial<Options> = {
  rounds: 2,
  floorSeconds: 3,
  transactions: 1_000,
  pacedSeconds: 3,
  backlog: 5_000,
  brokerMessages: 5_000,
  inboxMessages: 2_000,
  bigRows: 100_000,
  idsRows: 200_000,
  idsSeconds: 3,
};

const USAGE = `npm run bench -- [flags]

  --only a,b,c         run these workloads only: ${ALL.map((w) => w.name).join(', ')}
  --all                issue 6's workloads, the former bench:relay/orders/retry, and ids
  --big                add the memory run (RSS through --big-rows rows, default 1,000,000)
  --full               issue 6's sizes: 20,000 transactions, 100,000-row backlog, 100,000 broker
                       messages, 20,000 inbox messages, paced sweep 400,600,800/s (about 18
                       minutes on 2 quiet cores)
  --quick              small sizes and 2 rounds (a smoke run of a few minutes)
  --rounds N           rounds per workload (default 3)
  --transactions N     steady load: transactions per round (default 5000; --full 20000)
  --concurrency N      steady load: concurrent transactions (default 16)
  --floor-seconds N    Floor D (pgbench, PostgreSQL alone): seconds per run (default 8)
  --rate N             paced: events per second (default 1000)
  --low-rate N         paced: the second, lower rate of ours (default 200)
  --sweep-rates a,b,c  paced: more rates for ours, to find the highest whose p99 meets the target
                       (default none; --full 400,600,800)
  --paced-seconds N    paced: duration (default 10)
  --paced-warmup-seconds N  paced: warm-up at the same rate before the clock starts (default 3); the
                       clock then waits (up to 30 s) until the warm-up's events were all handled
  --backlog N          backlog drain: rows (default 30000; --full 100000)
  --backlog-inbox      backlog drain and --big: handlers with the inbox (default: inbox: false, like Limit B)
  --broker-messages N  Limit A: messages (default 30000; --full 100000)
  --inbox-messages N   inbox workload: messages (default 5000; --full 20000)
  --big-rows N         memory run: rows (default 1000000)
  --ack-delay-ms N     our consumers' consumer.ackDelayMs (default: the library's, 5; 0 acks at the end
                       of each event-loop turn), to measure what the ack window saves
  --prefetch N         every consumer's prefetch, ours and plain (default 50, the library's default; ours runs 10 calls at once, its default concurrency)
  --batch-size N       relay batch, ours and Limit B (default 200, the library's default)
  --window N           Limit A's confirm window (default 1000, the library's relay.maxUnconfirmed)
  --warmup N           steady load: warm-up transactions before the clock starts (default 200)
  --pool-max N         TypeORM pool size of the producers (default 20)
  --pool-idle-ms N     paced: idleTimeoutMillis of the producer's and consumer's pg pools (default 0:
                       idle connections are kept, as the README advises; pg's own default, 10000,
                       closes the cold start's connections inside the paced window). Other workloads
                       keep pg's default
  --relay-rows N       former bench:relay: rows (default 20000)
  --orders N           former bench:orders: orders per round (default 3000)
  --retry-failing N    former bench:retry: failing messages (default 1000)
  --retry-rate N       former bench:retry: healthy messages per second (default 200)
  --ids-rows N         ids: rows in the inbox/outbox table before each run (default 2000000)
  --ids-seconds N      ids: seconds of each pgbench run (default 10)
  --cpu-prof           run every child process under node --cpu-prof (bench/results/<stamp>-profiles/)
  --timelines          paced: write each run's per-event commit and handled times, with the stall
                       probe's samples, to bench/results/<stamp>-timelines/

DATABASE_URL and RABBITMQ_URL override the local services.`;

function parseArgs(argv: string[]): Options {
  const options: Options = { ...DEFAULTS };
  const numeric: Record<string, keyof Options> = {
    '--rounds': 'rounds',
    '--transactions': 'transactions',
    '--n': 'transactions',
    '--concurrency': 'concurrency',
    '--floor-seconds': 'floorSeconds',
    '--rate': 'rate',
    '--low-rate': 'lowRate',
    '--paced-seconds': 'pacedSeconds',
    '--paced-warmup-seconds': 'pacedWarmupSeconds',
    '--backlog': 'backlog',
    '--broker-messages': 'brokerMessages',
    '--inbox-messages': 'inboxMessages',
    '--big-rows': 'bigRows',
    '--prefetch': 'prefetch',
    '--batch-size': 'batchSize',
    '--window': 'window',
    '--warmup': 'warmup',
    '--pool-max': 'poolMax',
    '--relay-rows': 'relayRows',
    '--orders': 'orders',
    '--retry-failing': 'retryFailing',
    '--retry-rate': 'retryRate',
    '--ids-rows': 'idsRows',
    '--ids-seconds': 'idsSeconds',
  };
  const explicit: Partial<Options> = {};
  let preset: Partial<Options> = {};
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split('=', 2) as [string, string | undefined];
    const value = () => inline ?? argv[++i];
    if (flag === '--help' || flag === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else if (flag === '--only') explicit.only = value()!.split(',').map((s) => s.trim()).filter(Boolean);
    else if (flag === '--all') explicit.only = [...DEFAULT, ...FORMER].map((w) => w.name);
    else if (flag === '--big') explicit.big = true;
    else if (flag === '--quick') preset = QUICK;
    else if (flag === '--full') preset = FULL;
    else if (flag === '--backlog-inbox') explicit.backlogInbox = true;
    else if (flag === '--cpu-prof') explicit.cpuProf = true;
    else if (flag === '--timelines') explicit.timelines = true;
    else if (flag === '--ack-delay-ms') {
      explicit.ackDelayMs = Number(value());
      if (!Number.isInteger(explicit.ackDelayMs) || explicit.ackDelayMs < 0 || explicit.ackDelayMs > 1_000) throw new Error('--ack-delay-ms needs a whole number of ms from 0 to 1000');
    } else if (flag === '--pool-idle-ms') {
      explicit.poolIdleMs = Number(value());
      if (!Number.isInteger(explicit.poolIdleMs) || explicit.poolIdleMs < 0) throw new Error('--pool-idle-ms needs a whole number of ms (0: never close)');
    }
    else if (flag === '--sweep-rates') {
      explicit.sweepRates = value()!.split(',').map((s) => Number(s.trim()));
      if (explicit.sweepRates.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error('--sweep-rates needs positive whole numbers, comma-separated');
    }
    else if (numeric[flag]) {
      const n = Number(value());
      if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} needs a positive whole number`);
      (explicit as Record<string, number>)[numeric[flag]] = n;
    } else throw new Error(`unknown flag ${flag}\n\n${USAGE}`);
  }
  Object.assign(options, preset, explicit);
  for (const name of options.only ?? []) {
    if (!ALL.some((w) => w.name === name)) throw new Error(`unknown workload "${name}"; choose from ${ALL.map((w) => w.name).join(', ')}`);
  }
  return options;
}

function selected(options: Options): Workload[] {
  if (options.only) return ALL.filter((w) => options.only!.includes(w.name) || (w === memory && options.big));
  return options.big ? [...DEFAULT, memory] : DEFAULT;
}

async function machine(): Promise<Record<string, unknown>> {
  const cpus = os.cpus();
  const postgres = await withDb(async (db) => {
    const version = (await db.query('SHOW server_version')).rows[0].server_version as string;
    const settings = await db.query(
      "SELECT name, setting FROM pg_settings WHERE name IN ('synchronous_commit', 'fsync', 'shared_buffers', 'max_connections', 'wal_level')",
    );
    return { version, ...Object.fromEntries(settings.rows.map((r: { name: string; setting: string }) => [r.name, r.setting])) };
  }).catch((error: Error) => ({ error: error.message }));
  const connection = await amqp.connect(RABBITMQ_URL);
  const server = (connection.connection as unknown as { serverProperties?: Record<string, unknown> }).serverProperties ?? {};
  await connection.close();
  const git = (command: string) => {
    try {
      return execSync(command, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return undefined;
    }
  };
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    postgres,
    rabbitmq: server.version,
    commit: git('git rev-parse --short HEAD') ?? process.env.BENCH_COMMIT,
    libraryUncommittedChanges: (git('git status --porcelain -- libs') ?? '').split('\n').filter(Boolean).length,
    loadAverageAtStart: os.loadavg(),
  };
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const resultsDir = join(ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const harness = {
    logDir: join(resultsDir, `${stamp}-logs`),
    cpuProfDir: options.cpuProf ? join(resultsDir, `${stamp}-profiles`) : undefined,
    timelinesDir: options.timelines ? join(resultsDir, `${stamp}-timelines`) : undefined,
  };
  const resources = new Resources();
  removeOnFatal = async () => {
    // Bounded: a fatal error must end the run even when a server no longer answers.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([resources.cleanup(), new Promise((resolve) => (timer = setTimeout(resolve, 30_000)))]);
    clearTimeout(timer);
  };
  const cpu = CpuMeter.create();
  const onSignal = () => {
    console.error('\ninterrupted: stopping children and removing what this run created');
    killChildren();
    void resources.cleanup().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const info = await machine();
  const workloads = selected(options);
  const started = Date.now();
  const elapsed = () => `${((Date.now() - started) / 1_000).toFixed(0).padStart(4)} s`;
  console.log(
    `nestjs-integration-events benchmark, run ${Namespace.runId}: ${workloads.map((w) => w.name).join(', ')}; ` +
      `${info.cpus} CPUs (${info.cpuModel}), Node ${info.node}, PostgreSQL ${(info.postgres as { version?: string }).version}, RabbitMQ ${info.rabbitmq}; ` +
      `paced: pg pools' idleTimeoutMillis ${options.poolIdleMs}; our consumers' ackDelayMs: ${options.ackDelayMs ?? 'the default'}`,
  );

  const rows: Row[] = [];
  const targets: Target[] = [];
  const checks: Check[] = [];
  const failures: string[] = [];
  const json: Record<string, unknown> = {};
  const cpuEntries: Array<{ workload: string; variant: string; runs: VariantRun[] }> = [];

  const completed: Array<{ workload: Workload; runs: Runs; rounds: number; variants: string[] }> = [];
  for (const workload of workloads) {
    const runs: Runs = {};
    const rounds = workload.rounds?.(options) ?? options.rounds;
    const variants = workload.variants(options);
    try {
      for (let round = 0; round < rounds; round++) {
        // Alternate the order, so that drift (autovacuum, caches, the broker's state) does not favour one side.
        const order = round % 2 === 0 ? variants : [...variants].reverse();
        for (const variant of order) {
          const log = (message: string) => console.log(`${elapsed()}  [${workload.name} ${round + 1}/${rounds}] ${variant}: ${message}`);
          log('running');
          try {
            const run = await workload.run(variant, { options, harness, resources, cpu, round, log });
            // Kept in the JSON; it counts the benchmark's own processes too ("cpu.other" is the better sign of other work).
            run.details = { ...run.details, loadAverage1m: os.loadavg()[0] };
            (runs[variant] ??= []).push(run);
            checks.push(...run.checks);
            const bad = run.checks.filter((c) => !c.ok);
            const shown = Object.entries(run.metrics)
              .filter(([k]) => !k.startsWith('rss.') && !k.includes('Mb'))
              .map(([k, v]) => `${k} ${v >= 100 ? Math.round(v) : v.toFixed(1)}`)
              .join(', ');
            log(`${shown}${bad.length ? `  COUNTS OFF: ${bad.map((c) => `${c.what} expected ${c.expected}, got ${c.actual}`).join('; ')}` : ''}`);
          } finally {
            const left = await resources.cleanup();
            if (left.length > 0) failures.push(`${workload.name} ${variant}: cleanup could not remove ${left.join('; ')}`);
          }
        }
      }
      completed.push({ workload, runs, rounds, variants });
    } catch (error) {
      killChildren();
      const left = await resources.cleanup();
      if (left.length > 0) failures.push(`${workload.name}: cleanup could not remove ${left.join('; ')}`);
      const message = `${workload.name}: ${(error as Error).stack ?? String(error)}`;
      failures.push(message);
      console.error(`${elapsed()}  [${workload.name}] FAILED: ${message}`);
      json[workload.name] = { title: workload.title, error: message, runs };
    }
  }

  // Summed up once every workload has run: a target may cite another workload's runs (the steady load
  // cites Floor D's CPU figures).
  const allRuns = Object.fromEntries(completed.map(({ workload, runs }) => [workload.name, runs]));
  for (const { workload, runs, rounds, variants } of completed) {
    for (const variant of variants) if (runs[variant]) cpuEntries.push({ workload: workload.name, variant, runs: runs[variant]! });
    try {
      const summary = workload.summarize(runs, options, allRuns);
      rows.push(...summary.rows);
      targets.push(...summary.targets);
      json[workload.name] = { title: workload.title, rounds, runs, summary };
    } catch (error) {
      const message = `${workload.name}: summing up failed: ${(error as Error).stack ?? String(error)}`;
      failures.push(message);
      json[workload.name] = { title: workload.title, error: message, runs };
    }
  }

  const failedChecks = checks.filter((c) => !c.ok);
  console.log(`\nResults (median of ${options.rounds} rounds unless noted; ${info.cpus} CPUs, ${info.cpuModel}; ${elapsed().trim()} in all)\n`);
  console.log(renderTable(rows));
  if (targets.length) console.log(`\nTargets of issue 6\n\n${renderTargets(targets)}`);
  if (cpuEntries.length) {
    console.log(`\nCPU per event (ms, median of rounds; measured window only; "other" = the rest of the machine) — ${info.cpus} cores\n`);
    console.log(renderCpuTable(cpuEntries));
  }
  console.log(`\nCounts: ${checks.length - failedChecks.length} of ${checks.length} checks passed`);
  for (const c of failedChecks) console.log(`  COUNT OFF: ${c.what}: expected ${c.expected}, got ${c.actual}`);
  for (const f of failures) console.log(`  FAILED: ${f.split('\n')[0]}`);

  const file = join(resultsDir, `${stamp}.json`);
  writeFileSync(
    file,
    JSON.stringify(
      { startedAt: new Date(started).toISOString(), seconds: (Date.now() - started) / 1_000, machine: { ...info, loadAverageAtEnd: os.loadavg() }, options, rows, targets, checks, failures, workloads: json },
      (_key, value: unknown) => (ArrayBuffer.isView(value) ? undefined : value),
      2,
    ),
  );
  console.log(`\nJSON: ${relative(process.cwd(), file)}   child logs: ${relative(process.cwd(), harness.logDir)}`);
  if (harness.cpuProfDir) {
    const summary = join(harness.cpuProfDir, 'summary.txt');
    writeFileSync(summary, summarizeProfiles(harness.cpuProfDir));
    console.log(`CPU profiles: ${relative(process.cwd(), harness.cpuProfDir)} (summary: ${relative(process.cwd(), summary)})`);
  }
  if (harness.timelinesDir && existsSync(harness.timelinesDir)) console.log(`Timelines: ${relative(process.cwd(), harness.timelinesDir)}`);
  process.exitCode = failedChecks.length > 0 || failures.length > 0 ? 1 : 0;
}

/** Removes what the run created, on a fatal error (set once the run has something to remove). */
let removeOnFatal: () => Promise<void> = async () => undefined;

main().catch(async (error: unknown) => {
  console.error(error);
  killChildren();
  await removeOnFatal();
  process.exit(1);
});
