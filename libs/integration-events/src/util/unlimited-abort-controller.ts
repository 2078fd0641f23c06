import { setMaxListeners } from 'node:events';

/**
 * An `AbortController` whose signal takes any number of listeners without Node's "possible EventTarget
 * memory leak" warning (past 10): a consumer's shutdown signal has one per call in progress that reads
 * its own signal, and on SQLite one per call waiting for its inbox turn; each is removed when its call
 * ends or starts.
 */
export function unlimitedAbortController(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}
