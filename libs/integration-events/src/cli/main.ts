#!/usr/bin/env node
import { printable } from '../util/printable';
import 'reflect-metadata';
import { parseArguments, UsageError } from './cli-arguments';
import { USAGE } from './cli-usage';
import { dlqCommand } from './dlq.command';
import { outboxCommand } from './outbox.command';
import { Output } from './output';

/** The operators' command line: dead-letter queues and stuck outbox rows. */
async function main(argv: readonly string[]): Promise<void> {
  const parsed = parseArguments(argv);
  const command = parsed.positional.shift();
  if (!command || command === 'help' || parsed.options.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const output = new Output(parsed.options.json === true);
  if (command === 'dlq') return dlqCommand(parsed, output);
  if (command === 'outbox') return outboxCommand(parsed, output);
  throw new UsageError(`unknown command "${command}"`);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError) {
    // It may quote an argument (an id from a script, which a hostile publisher chose).
    process.stderr.write(`${printable(error.message, 10_000)}\n\n${USAGE}\n`);
    process.exitCode = 2;
  } else {
    // It may quote what a dead letter carries (its id, the queue it names).
    process.stderr.write(`${printable(String((error as Error)?.message ?? error), 10_000)}\n`);
    process.exitCode = 1;
  }
});
