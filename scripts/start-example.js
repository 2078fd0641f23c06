#!/usr/bin/env node
/**
 * Runs the example (built by `npm run build`), in the mode the environment asks for:
 *
 * - neither DATABASE_URL nor RABBITMQ_URL: embedded — both services in one process, on in-memory SQLite
 *   and an in-process broker (Node.js alone is enough);
 * - both: services — ordering (ORDERING_PORT, 3001) and payments (PAYMENTS_PORT, 3002), each in its own
 *   process, on PostgreSQL and RabbitMQ;
 * - only one: refused.
 *
 * Logs are prefixed with the service's name. Ctrl-C (SIGINT) or SIGTERM stops everything gracefully; if
 * one process dies, the other is stopped too.
 */
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');

const root = path.resolve(__dirname, '..');
const hasDatabase = Boolean(process.env.DATABASE_URL);
const hasBroker = Boolean(process.env.RABBITMQ_URL);
if (hasDatabase !== hasBroker) {
  process.stderr.write(
    `Only ${hasDatabase ? 'DATABASE_URL' : 'RABBITMQ_URL'} is set. Set both to run the services on PostgreSQL and ` +
      'RabbitMQ (one process each), or neither to run everything in one process on SQLite and an in-process broker.\n',
  );
  process.exit(1);
}

const ports = { ORDERING_PORT: process.env.ORDERING_PORT ?? '3001', PAYMENTS_PORT: process.env.PAYMENTS_PORT ?? '3002' };
const processes = hasDatabase
  ? [
      { name: 'ordering', entry: 'dist/apps/ordering/src/main.js', env: { PORT: ports.ORDERING_PORT } },
      { name: 'payments', entry: 'dist/apps/payments/src/main.js', env: { PORT: ports.PAYMENTS_PORT } },
    ]
  : [{ name: 'example', entry: 'dist/apps/embedded/main.js', env: ports }];

let stopping = false;
const children = processes.map(({ name, entry, env }) => {
  const child = spawn(process.execPath, [path.join(root, entry)], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const stream of [child.stdout, child.stderr]) {
    readline.createInterface({ input: stream }).on('line', (line) => process.stdout.write(`[${name}] ${line}\n`));
  }
  child.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`[${name}] exited (${signal ?? code}); stopping\n`);
      stop(code || 1);
    }
  });
  return child;
});

/** How long a service may take to shut down before it is killed (its own shutdown waits are shorter). */
const KILL_AFTER_MS = 30_000;

function stop(exitCode) {
  if (stopping) return;
  stopping = true;
  let running = children.filter((child) => child.exitCode === null && child.signalCode === null);
  if (running.length === 0) process.exit(exitCode);
  let killed = false;
  for (const child of running) {
    child.once('exit', () => {
      running = running.filter((other) => other !== child);
      if (running.length === 0) process.exit(killed ? 1 : exitCode);
    });
    child.kill('SIGTERM');
  }
  // A shutdown that hangs (a service stuck on a database that stopped answering) must not keep the
  // terminal: Nest ignores a second signal while it shuts down.
  setTimeout(() => {
    for (const child of running) {
      killed = true;
      process.stderr.write(`[${processes[children.indexOf(child)].name}] did not stop within ${KILL_AFTER_MS / 1000} s: killing it\n`);
      child.kill('SIGKILL');
    }
  }, KILL_AFTER_MS).unref();
}

process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));
