import { printable, printableId } from '../util/printable';
import type { Logger } from '@nestjs/common';
import { failureDetails } from '../consumer/failure-details';
import type { DeadLetter } from './dead-letter.interface';

/**
 * Calls the `consumer.onDeadLetter` hook for one dead letter, for at most `timeoutMs` (the handler's
 * timeout). The caller awaits it in the handler's slot, so hooks never pile up; a hook that hangs (a
 * webhook without a timeout) holds the slot only that long, then the consumer goes on (the hook's
 * promise is left to finish or fail on its own, logged). Errors it throws are logged. Never throws.
 */
export async function callDeadLetterHook(
  hook: ((deadLetter: DeadLetter) => void | Promise<void>) | undefined,
  deadLetter: DeadLetter,
  timeoutMs: number,
  logger: Pick<Logger, 'error' | 'warn'>,
): Promise<void> {
  if (!hook) return;
  const id = printableId(deadLetter.messageId);
  // failureDetails describes anything thrown without throwing itself (a rejection handled here must not become unhandled).
  const failed = (error: unknown): void => logger.error(`onDeadLetter threw for message ${id}: ${printable(failureDetails(error).message)}`);
  let call: Promise<void>;
  try {
    call = Promise.resolve(hook(deadLetter));
  } catch (error) {
    failed(error);
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timed-out'>((resolve) => {
    // Unreferenced: a hook that never settles must not keep the process alive after shutdown.
    timer = setTimeout(() => resolve('timed-out'), timeoutMs).unref();
  });
  try {
    const outcome = await Promise.race([call.then(() => 'done' as const), timedOut]);
    if (outcome === 'timed-out') {
      logger.warn(`onDeadLetter did not finish within ${timeoutMs} ms for message ${id}; the consumer goes on without it`);
      call.catch(failed);
    }
  } catch (error) {
    failed(error);
  } finally {
    clearTimeout(timer);
  }
}
