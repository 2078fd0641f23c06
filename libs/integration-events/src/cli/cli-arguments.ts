/** Positional arguments and `--flag value` / `--switch` options, parsed without a dependency. */
export interface ParsedArguments {
  readonly positional: string[];
  readonly options: Record<string, string | true>;
}

const SWITCHES = new Set(['json', 'all', 'help', 'all-unroutable', 'all-failed', 'all-stuck']);

export function parseArguments(argv: readonly string[]): ParsedArguments {
  const positional: string[] = [];
  const options: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      // Whatever follows is positional: ids from a script (a dead letter's id may read "--all").
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '-h') {
      options.help = true;
    } else if (arg.startsWith('--')) {
      // Only the first `=` separates: a value may hold more (`--database-url=postgres://…?sslmode=require`).
      const equals = arg.indexOf('=');
      const name = equals === -1 ? arg.slice(2) : arg.slice(2, equals);
      const inline = equals === -1 ? undefined : arg.slice(equals + 1);
      // Twice is a mistake, or a value from a script taken for an option: neither may win silently.
      if (Object.hasOwn(options, name) && name !== 'help') throw new UsageError(`--${name} is given twice`);
      // A switch takes no value: `--all=x` (an id from a script, say) would otherwise act as --all, or
      // not at all, and the id be dropped without a word.
      if (inline !== undefined && SWITCHES.has(name)) throw new UsageError(`--${name} takes no value (given "${inline}")`);
      if (inline !== undefined) options[name] = inline;
      else if (SWITCHES.has(name)) options[name] = true;
      else {
        const value = argv[++i];
        if (value === undefined || value === '--') throw new UsageError(`--${name} needs a value`);
        options[name] = value;
      }
    } else {
      positional.push(arg);
    }
  }
  return { positional, options };
}

/** Options every command takes. */
const COMMON_OPTIONS = ['json', 'help'];

/**
 * Refuses options that `command` does not take, before it connects anywhere: a mistyped `--shema`
 * would otherwise be ignored, and the command would act on the default schema's table.
 */
export function assertKnownOptions(options: ParsedArguments['options'], command: string, known: readonly string[]): void {
  const allowed = new Set([...COMMON_OPTIONS, ...known]);
  const unknown = Object.keys(options).filter((name) => !allowed.has(name));
  if (unknown.length > 0) {
    throw new UsageError(`${command} does not take ${unknown.map((name) => `--${name}`).join(', ')}`);
  }
}

/** A mistake in how the command was called: printed with the usage, exit code 2. */
export class UsageError extends Error {}
