import { UsageError } from './cli-arguments';

/**
 * The URL a command connects to: its `--<flag>`, else the environment variable, else the default. An
 * empty `--<flag>` (`--url "$PROD_AMQP"` with the variable unset) or an empty variable
 * (`DATABASE_URL="$PROD_DB"`) is refused: amqplib and node-postgres would take it for localhost (or the
 * `PG*` variables), the default would be localhost too, and the command act on a server nobody named.
 */
export function connectionUrl(given: string | true | undefined, flag: string, variable: string, fallback: string): string {
  if (typeof given === 'string') {
    if (given.trim() === '') throw new UsageError(`--${flag} is empty: give the URL (an unset variable in "--${flag} $VAR"?)`);
    return given;
  }
  const fromEnvironment = process.env[variable];
  if (fromEnvironment === undefined) return fallback;
  if (fromEnvironment.trim() === '') throw new UsageError(`${variable} is set but empty: give the URL, or unset it for the default`);
  return fromEnvironment;
}
