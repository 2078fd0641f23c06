import { UsageError } from './cli-arguments';

/**
 * The URL a command connects to: its `--<flag>`, else the environment variable, else the default. An
 * empty `--<flag>` (`--url "$PROD_AMQP"` with the variable unset) is refused: amqplib and node-postgres
 * would take it for localhost (or the `PG*` variables), and the command act on a server nobody named. An
 * empty or blank variable counts as unset.
 */
export function connectionUrl(given: string | true | undefined, flag: string, variable: string, fallback: string): string {
  if (typeof given === 'string') {
    if (given.trim() === '') throw new UsageError(`--${flag} is empty: give the URL (an unset variable in "--${flag} $VAR"?)`);
    return given;
  }
  const fromEnvironment = process.env[variable];
  return fromEnvironment !== undefined && fromEnvironment.trim() !== '' ? fromEnvironment : fallback;
}
