/**
 * The fault-injection suite: real load through the example's two services, faults injected while it
 * runs, then Jepsen-style counts from the databases. See chaos/README.md.
 *
 *   npm run chaos
 *   CHAOS_SCENARIOS=a,b CHAOS_RATE=80 npm run chaos
 *
 * Runs against a private PostgreSQL cluster and a private RabbitMQ node it starts on free ports and
 * deletes at the end (even on failure): the shared services on 5432/5672 are never touched.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Checker } from './checker';
import { LoadGenerator } from './load';
import { PrivatePostgres } from './private-postgres';
import { PrivateRabbitMq } from './private-rabbitmq';
import { failures, legend, type ScenarioResult, table } from './report';
import { type Scenario, type ScenarioContext, SCENARIOS } from './scenarios';
import { ServiceProcess, type ServiceName } from './service-process';
import { errorMessage, freePort, log, run, waitFor } from './util';

const REPO_ROOT = path.resolve(__dirname, '../..');
const RATE = Number(process.env.CHAOS_RATE ?? 60);
const SELECTED = (process.env.CHAOS_SCENARIOS ?? SCENARIOS.map((s) => s.key).join(','))
  .split(',')
  .map((key) => key.trim())
  .filter(Boolean);
/** A hard bound on the whole run; the suite tears down and fails when it is reached. */
const RUN_DEADLINE_MS = Number(process.env.CHAOS_DEADLINE_MS ?? 9 * 60_000);

const services = new Set<ServiceProcess>();
let postgres: PrivatePostgres | undefined;
let rabbitmq: PrivateRabbitMq | undefined;
let tempRoot: string | undefined;
let tornDown = false;

async function main(): Promise<number> {
  if (!Number.isFinite(RATE) || RATE <= 0) throw new Error(`CHAOS_RATE must be a positive number, got ${process.env.CHAOS_RATE}`);
  const scenarios = SELECTED.map((key) => {
    const scenario = SCENARIOS.find((s) => s.key === key);
    if (!scenario) throw new Error(`Unknown scenario "${key}" (known: ${SCENARIOS.map((s) => s.key).join(', ')})`);
    return scenario;
  });
  const started = Date.now();
  tempRoot = mkdtempSync('/tmp/chaos-');
  chmodSync(tempRoot, 0o755); // the postgres user must reach its cluster below it
  const logDir = path.join(REPO_ROOT, 'dist', 'chaos-logs', new Date().toISOString().replace(/[:.]/g, '-'));
  mkdirSync(logDir, { recursive: true });
  log(`library and example: ${describeSource()}`);
  const app = await buildSnapshot(tempRoot);
  log(`service logs in ${path.relative(REPO_ROOT, logDir)}; ${RATE} orders/s; scenarios ${scenarios.map((s) => s.key).join(', ')}`);

  const [pg, mq] = await Promise.allSettled([PrivatePostgres.start(tempRoot), PrivateRabbitMq.start(tempRoot, scenarios.map(vhostOf))]);
  if (pg.status === 'fulfilled') postgres = pg.value;
  if (mq.status === 'fulfilled') rabbitmq = mq.value;
  if (pg.status === 'rejected') throw new Error(`Could not start the private PostgreSQL: ${errorMessage(pg.reason)}`);
  if (mq.status === 'rejected') throw new Error(`Could not start the private RabbitMQ node: ${errorMessage(mq.reason)}`);

  const results: ScenarioResult[] = [];
  for (const scenario of scenarios) {
    results.push(await runScenario(scenario, app, path.join(logDir, scenario.key)));
  }

  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  process.stdout.write(`\n${table(results)}\n\n${legend(results)}\n\nwall time ${seconds} s, ${RATE} orders/s\n`);
  const failed = results.filter((r) => failures(r).length > 0);
  if (failed.length) {
    log(`FAILED: ${failed.map((r) => r.key).join(', ')} (service logs in ${path.relative(REPO_ROOT, logDir)})`);
    return 1;
  }
  log('all scenarios passed: nothing committed was lost, nothing uncommitted was delivered, no side effect ran twice');
  return 0;
}

/**
 * Compiles the library and the example from their sources into the temporary directory, and runs the
 * services from there. The suite never builds into, reads from or deletes the library's `dist/` in the
 * working tree: other sessions' builds and tests use it concurrently (its build starts by deleting it), and
 * a rebuild during the run must not change what a restarted process runs. Third-party packages still come
 * from the repository's node_modules (NODE_PATH at run time, ordinary resolution at compile time), one copy
 * each.
 */
async function buildSnapshot(root: string): Promise<{ entry: (name: ServiceName) => string; env: NodeJS.ProcessEnv }> {
  const started = Date.now();
  const app = path.join(root, 'app');
  const library = path.join(app, 'node_modules', 'nestjs-integration-events');
  const tsc = [path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc')];
  mkdirSync(library, { recursive: true });
  cpSync(path.join(REPO_ROOT, 'libs', 'integration-events', 'package.json'), path.join(library, 'package.json'));
  await run(process.execPath, [...tsc, '-p', path.join(REPO_ROOT, 'libs', 'integration-events', 'tsconfig.build.json'), '--outDir', path.join(library, 'dist')], {
    timeoutMs: 180_000,
  });
  // The example, type-checked against that copy of the library (not the working tree's dist/).
  const appsConfig = path.join(root, 'tsconfig.apps.json');
  writeFileSync(
    appsConfig,
    JSON.stringify({
      extends: path.join(REPO_ROOT, 'apps', 'tsconfig.build.json'),
      compilerOptions: {
        rootDir: path.join(REPO_ROOT, 'apps'),
        outDir: path.join(app, 'apps'),
        typeRoots: [path.join(REPO_ROOT, 'node_modules', '@types')],
        paths: {
          'nestjs-integration-events': [path.join(library, 'dist', 'index.d.ts')],
          'nestjs-integration-events/*': [path.join(library, 'dist', '*', 'index.d.ts')],
        },
      },
    }),
  );
  await run(process.execPath, [...tsc, '-p', appsConfig], { timeoutMs: 180_000 });
  log(`library and example compiled into ${app} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return {
    entry: (name) => path.join(app, 'apps', name, 'src', 'main.js'),
    env: { PATH: process.env.PATH, NODE_PATH: path.join(REPO_ROOT, 'node_modules'), LANG: 'C.UTF-8' },
  };
}

function describeSource(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'libs', 'apps'], { cwd: REPO_ROOT, encoding: 'utf8' })
      .split('\n')
      .filter(Boolean).length;
    return `commit ${head}${dirty ? ` + ${dirty} uncommitted change(s) under libs/ and apps/` : ''}`;
  } catch {
    return 'unknown commit';
  }
}

async function runScenario(scenario: Scenario, app: Awaited<ReturnType<typeof buildSnapshot>>, logDir: string): Promise<ScenarioResult> {
  const pg = postgres!;
  const mq = rabbitmq!;
  const notes: string[] = [];
  const launched: ServiceProcess[] = [];
  let load: LoadGenerator | undefined;
  let loadSeconds = 0;
  let settleSeconds = 0;
  let quiescence: ScenarioResult['quiescence'] = 'not reached';
  log(`=== scenario ${scenario.key}: ${scenario.title}`);
  mkdirSync(logDir, { recursive: true });
  try {
    // A fresh database, and a vhost of its own (created when the node booted): the counts are this scenario's alone.
    const databaseUrl = await pg.createDatabase(`chaos_${scenario.key}`);
    const vhost = vhostOf(scenario);
    const env = { ...app.env, DATABASE_URL: databaseUrl, RABBITMQ_URL: mq.url(vhost) };
    const spawnService = async (name: ServiceName, instance: number): Promise<ServiceProcess> => {
      // PGAPPNAME: node-postgres names the service's connections after it (see pg_stat_activity).
      const serviceEnv = { ...env, PGAPPNAME: `${name}#${instance}` };
      const service = new ServiceProcess({ name, instance, port: await freePort(), entry: app.entry(name), env: serviceEnv, logDir });
      services.add(service);
      launched.push(service);
      return service;
    };
    // Payments first: its queue must be bound before ordering publishes (else the first events are
    // unroutable). One at a time: each runs the migrations on the fresh database.
    const payments: ServiceProcess[] = [];
    for (let i = 1; i <= scenario.paymentsInstances; i++) payments.push(await spawnService('payments', i));
    const ordering: ServiceProcess[] = [];
    for (let i = 1; i <= scenario.orderingInstances; i++) ordering.push(await spawnService('ordering', i));
    for (const service of [...payments, ...ordering]) {
      await service.start();
      log(`  ${service.label} up (pid ${service.pid}, ${service.url})`);
    }

    load = new LoadGenerator(() => ordering.map((s) => s.url), RATE, `chaos-${scenario.key}`);
    const context: ScenarioContext = { ordering, payments, load, postgres: pg, rabbitmq: mq, databaseUrl, vhost, note: (text) => notes.push(text) };
    const loadStarted = Date.now();
    load.start();
    const minimum = new Promise<void>((resolve) => setTimeout(resolve, scenario.loadMs));
    await Promise.all([minimum, scenario.inject(context)]);
    await load.stop();
    loadSeconds = (Date.now() - loadStarted) / 1000;
    const stats = load.stats;
    log(`  load stopped after ${loadSeconds.toFixed(1)} s: ${stats.attempted} attempted, ${stats.created} acknowledged, ${stats.failed} failed`);

    // Every service must be up again (a crashed one is being restarted by its supervisor).
    await waitFor('every service to be running', async () => launched.every((s) => s.running), { timeoutMs: 60_000 });
    const checker = new Checker(databaseUrl, mq, vhost);
    const settleStarted = Date.now();
    quiescence = await checker.awaitQuiescence({ deadlineMs: 120_000, stallMs: 45_000 });
    settleSeconds = (Date.now() - settleStarted) / 1000;
    log(`  ${quiescence} after ${settleSeconds.toFixed(1)} s`);
    await Promise.all(launched.map((s) => s.stop()));
    const counts = await checker.count(load.acknowledgedIds);
    const result: ScenarioResult = {
      key: scenario.key,
      title: scenario.title,
      load: stats,
      counts,
      rawDuplicates: launched.reduce((sum, s) => sum + s.duplicateSkips, 0),
      crashes: launched.reduce((sum, s) => sum + s.crashes, 0),
      quiescence,
      loadSeconds,
      settleSeconds,
      notes,
    };
    const unacknowledged = counts.committed - (stats.created - counts.acknowledgedMissing);
    if (unacknowledged > 0) notes.push(`${unacknowledged} orders committed whose HTTP response never arrived (process killed after the commit, or request timed out)`);
    const problems = failures(result);
    if (problems.length) {
      log(`  FAIL: ${problems.join('; ')}`);
      for (const line of [...(await checker.describeLosses()), ...(await checker.describeDuplicates())]) log(`    ${line}`);
    } else {
      log(`  ok: ${counts.committed} committed orders, all paid once; ${result.rawDuplicates} duplicate deliveries skipped by the inbox`);
    }
    return result;
  } catch (error) {
    log(`!! scenario ${scenario.key} broke: ${errorMessage(error)}`);
    await Promise.all(launched.map((s) => s.stop(5_000).catch(() => undefined)));
    return {
      key: scenario.key,
      title: scenario.title,
      load: load?.stats ?? { attempted: 0, created: 0, failed: 0, failures: {}, notSent: 0, p50Ms: 0, p99Ms: 0 },
      counts: undefined,
      rawDuplicates: launched.reduce((sum, s) => sum + s.duplicateSkips, 0),
      crashes: launched.reduce((sum, s) => sum + s.crashes, 0),
      quiescence,
      loadSeconds,
      settleSeconds,
      notes,
      error: errorMessage(error),
    };
  } finally {
    await load?.stop();
  }
}

function vhostOf(scenario: Scenario): string {
  return `chaos-${scenario.key}`;
}

/** Kills what the suite started and deletes its temporary directory; safe to call twice. */
async function teardown(): Promise<void> {
  if (tornDown) return;
  tornDown = true;
  await Promise.all([...services].map((s) => s.stop(3_000).catch(() => undefined)));
  await Promise.all([
    rabbitmq?.stop().catch((error: unknown) => log(`!! could not stop the private RabbitMQ node: ${errorMessage(error)}`)),
    postgres?.stop().catch((error: unknown) => log(`!! could not stop the private PostgreSQL: ${errorMessage(error)}`)),
  ]);
  if (tempRoot && !process.env.CHAOS_KEEP_TEMP) rmSync(tempRoot, { recursive: true, force: true });
  log(`torn down: services stopped, private PostgreSQL and RabbitMQ stopped${tempRoot && !process.env.CHAOS_KEEP_TEMP ? `, ${tempRoot} deleted` : ''}`);
}

function abort(reason: string, exitCode: number): void {
  log(`!! ${reason}: tearing down`);
  void teardown().finally(() => process.exit(exitCode));
}

process.once('SIGINT', () => abort('interrupted', 130));
process.once('SIGTERM', () => abort('terminated', 143));
setTimeout(() => abort(`the run exceeded its ${RUN_DEADLINE_MS / 1000} s bound`, 2), RUN_DEADLINE_MS).unref();

main()
  .catch((error: unknown) => {
    log(`!! the suite itself failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return 2;
  })
  .then(async (exitCode) => {
    await teardown();
    process.exit(exitCode);
  });
