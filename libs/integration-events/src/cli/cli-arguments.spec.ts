import { assertKnownOptions, parseArguments, UsageError } from './cli-arguments';

describe('parseArguments', () => {
  it('keeps every "=" after the first in a --flag=value', () => {
    const url = 'postgres://ops:p=ss@db:5432/app?sslmode=require&options=-c%20search_path%3Dordering';
    expect(parseArguments(['outbox', 'list', `--database-url=${url}`, '--schema=ordering']).options).toEqual({
      'database-url': url,
      schema: 'ordering',
    });
  });

  it('takes --flag value, switches, and positional arguments', () => {
    expect(parseArguments(['dlq', 'requeue', 'q.dlq', '--all', '--url', 'amqp://h', '--json', 'id-1'])).toEqual({
      positional: ['dlq', 'requeue', 'q.dlq', 'id-1'],
      options: { all: true, url: 'amqp://h', json: true },
    });
    expect(parseArguments(['--limit=']).options).toEqual({ limit: '' });
    expect(() => parseArguments(['--url'])).toThrow(UsageError);
  });
});

describe('parseArguments: values from a script', () => {
  it('takes everything after "--" as positional, dead-letter ids that read like options included', () => {
    expect(parseArguments(['dlq', 'purge', 'q.dlq', '--json', '--', '--all', '--url=amqp://elsewhere', 'id-1'])).toEqual({
      positional: ['dlq', 'purge', 'q.dlq', '--all', '--url=amqp://elsewhere', 'id-1'],
      options: { json: true },
    });
  });

  it('refuses a value given to a switch (an id like "--all=x" would act as --all, or be dropped)', () => {
    expect(() => parseArguments(['dlq', 'purge', 'q.dlq', 'id-1', '--all=x'])).toThrow(new UsageError('--all takes no value (given "x")'));
    expect(() => parseArguments(['outbox', 'list', '--json=false'])).toThrow(new UsageError('--json takes no value (given "false")'));
    // After --, it is an id like any other.
    expect(parseArguments(['dlq', 'purge', 'q.dlq', '--', '--all=x']).positional).toEqual(['dlq', 'purge', 'q.dlq', '--all=x']);
  });

  it('refuses an option given twice instead of letting the last win', () => {
    expect(() => parseArguments(['dlq', 'list', 'q.dlq', '--url', 'amqp://a', '--url=amqp://b'])).toThrow(new UsageError('--url is given twice'));
    expect(() => parseArguments(['dlq', 'purge', 'q.dlq', '--all', '--all'])).toThrow(new UsageError('--all is given twice'));
    expect(parseArguments(['-h', '--help']).options).toEqual({ help: true });
  });

  it('does not take "--" for the value of an option', () => {
    expect(() => parseArguments(['dlq', 'purge', 'q.dlq', '--url', '--', '--all'])).toThrow(new UsageError('--url needs a value'));
  });
});

describe('assertKnownOptions', () => {
  it('refuses an option the command does not take, naming it, and takes --json and --help everywhere', () => {
    const { options } = parseArguments(['outbox', 'retry', '--all-stuck', '--shema', 'ordering', '--json']);
    expect(() => assertKnownOptions(options, 'outbox retry', ['schema', 'all-stuck'])).toThrow(
      new UsageError('outbox retry does not take --shema'),
    );
    expect(() => assertKnownOptions({ json: true, help: true, schema: 'x' }, 'outbox list', ['schema'])).not.toThrow();
  });
});
