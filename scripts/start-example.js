#!/usr/bin/env node
/**
 * Runs the example's two services, each in its own process, as they would run in production:
 * ordering (HTTP on PORT 3001) and payments (3002). Their logs are interleaved with a prefix.
 * Ctrl-C (SIGINT) or SIGTERM stops both gracefully; if one dies, the other is stopped too.
 *
 * Reads DATABASE_URL and RABBITMQ_URL (defaults: the local PostgreSQL and RabbitMQ).
 */
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');

const root = path.resolve(__dirname, '..');
const services = [
  { name: 'ordering', entry: 'dist/apps/ordering/src/main.js', port: process.env.ORDERING_PORT ?? '3001' },
  { name: 'payments', entry: 'dist/apps/payments/src/main.js', port: process.env.PAYMENTS_PORT ?? '3002' },
];

let stopping = false;
const children = services.map(({ name, entry, port }) => {
  const child = spawn(process.execPath, [path.join(root, entry)], {
    cwd: root,
    env: { ...process.env, PORT: port },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const stream of [child.stdout, child.stderr]) {
    readline.createInterface({ input: stream }).on('line', (line) => process.stdout.write(`[${name}] ${line}\n`));
  }
  child.on('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`[${name}] exited (${signal ?? code}); stopping the other service\n`);
      stop(code || 1);
    }
  });
  return child;
});

function stop(exitCode) {
  stopping = true;
  let running = children.filter((child) => child.exitCode === null && child.signalCode === null);
  if (running.length === 0) process.exit(exitCode);
  for (const child of running) {
    child.once('exit', () => {
      running = running.filter((other) => other !== child);
      if (running.length === 0) process.exit(exitCode);
    });
    child.kill('SIGTERM');
  }
}

process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));
