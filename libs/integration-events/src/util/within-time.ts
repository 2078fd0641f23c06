/**
 * `promise`, or a rejection with `Error(message)` once `timeoutMs` has passed (the work itself goes on;
 * only the wait for it ends). The timer is unreferenced: it never keeps the process alive.
 */
export function withinTime<T>(promise: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(message)), timeoutMs).unref();
  });
  return Promise.race([promise, timedOut]).finally(() => clearTimeout(timer));
}
