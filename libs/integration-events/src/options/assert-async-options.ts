import { InvalidIntegrationEventsOptionsError } from '../errors/invalid-options.error';

/** What `forRootAsync()` takes; the module's own options are what its factory (or class) returns. */
const ASYNC_OPTION_KEYS: readonly string[] = ['useFactory', 'useClass', 'useExisting', 'inject', 'imports', 'provideInjectionTokensFrom', 'isGlobal'];
const WAYS = ['useFactory', 'useClass', 'useExisting'] as const;

/**
 * Refuses what Nest's builder would silently ignore in `forRootAsync()`: a key it does not know (a typo
 * such as `injects`, or a module option such as `relay` put beside `useFactory` instead of in what it
 * returns), and a second way to give the options (with `useFactory` and `useClass`, the class is never
 * used). None of them, or one that is not a function, would otherwise fail later, in Nest's own words.
 */
export function assertAsyncOptions(options: unknown): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidIntegrationEventsOptionsError('(forRootAsync)', options, 'pass an object: { imports, inject, useFactory }');
  }
  const given = options as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!ASYNC_OPTION_KEYS.includes(key)) {
      throw new InvalidIntegrationEventsOptionsError(
        key,
        '(unknown option)',
        `remove it; forRootAsync() takes ${ASYNC_OPTION_KEYS.join(', ')}, and the module's options are what useFactory returns`,
      );
    }
  }
  // As Nest reads them: a way set to a falsy value (`useClass: flag ? X : null`) is not given.
  const ways = WAYS.filter((way) => Boolean(given[way]));
  if (ways.length !== 1) {
    throw new InvalidIntegrationEventsOptionsError(
      ways.length === 0 ? 'useFactory' : ways.join(', '),
      ways.length === 0 ? given.useFactory : '(more than one)',
      'give exactly one of useFactory, useClass or useExisting',
    );
  }
  const [way] = ways as [(typeof WAYS)[number]];
  const value = given[way];
  // useExisting names a provider, which may have any token: Nest injects it and calls its create().
  const fits = way === 'useExisting' ? ['function', 'string', 'symbol'].includes(typeof value) : typeof value === 'function';
  if (!fits) {
    const expected = way === 'useFactory' ? 'pass a function that returns the options' : way === 'useClass' ? 'pass a class' : "pass a provider's token";
    throw new InvalidIntegrationEventsOptionsError(way, value, expected);
  }
}
