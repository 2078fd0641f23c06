import { printable } from '../util/printable';

/** Prints a command's result as text, or as JSON with `--json`. */
export class Output {
  constructor(private readonly json: boolean) {}

  result(value: unknown, text: () => string[]): void {
    process.stdout.write(this.json ? `${JSON.stringify(value, null, 2)}\n` : `${text().join('\n')}\n`);
  }

  /**
   * A command that failed part-way: with `--json`, what it did before (`value`, with the error's
   * message) goes to standard output as its result; as text, the error's message (which says it) goes
   * to standard error. Either way the exit code is 1.
   */
  partialFailure(error: Error, value: Record<string, unknown>): void {
    if (this.json) process.stdout.write(`${JSON.stringify({ error: error.message, ...value }, null, 2)}\n`);
    // It may quote what dead letters carry (their ids, the queue they name).
    else process.stderr.write(`${printable(error.message, 10_000)}\n`);
    process.exitCode = 1;
  }
}
