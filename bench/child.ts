/**
 * Entry point of every child process of the harness: `node child.js <role> <label>`. Loads
 * `roles/<role>.js`, hands it its arguments and an IPC channel, and reports its result and peak RSS.
 */
import 'reflect-metadata';
import type { Message } from './lib/processes';

export interface ChildIO {
  send(message: Message): void;
  /** The next message of this type from the parent. */
  next(type: string): Promise<Message>;
}

export type Role = (args: Record<string, unknown>, io: ChildIO) => Promise<Record<string, unknown>>;

const received: Message[] = [];
const waiters: Array<{ type: string; resolve: (m: Message) => void }> = [];

const io: ChildIO = {
  send: (message) => process.send!(message),
  next: (type) => {
    const index = received.findIndex((m) => m.type === type);
    if (index >= 0) return Promise.resolve(received.splice(index, 1)[0]!);
    return new Promise((resolve) => waiters.push({ type, resolve }));
  },
};

process.on('message', (message: Message) => {
  if (message.type === 'heap') return reportHeap();
  const index = waiters.findIndex((w) => w.type === message.type);
  if (index >= 0) waiters.splice(index, 1)[0]!.resolve(message);
  else received.push(message);
});
/**
 * Answers the parent's `heap`: the V8 heap in use and the memory outside it (Buffers), after a full
 * garbage collection when the process runs with --expose-gc — what is live, without the garbage that
 * RSS also holds until the collector runs.
 */
function reportHeap(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const usage = process.memoryUsage();
  process.send!({ type: 'heap', afterGc: gc !== undefined, heapUsedMb: usage.heapUsed / 1_048_576, externalMb: usage.external / 1_048_576 });
}

// The parent died: do not linger.
process.on('disconnect', () => process.exit(3));

async function main(): Promise<void> {
  const [role, label] = process.argv.slice(2);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { run } = require(`./roles/${role}`) as { run: Role };
  const init = await io.next('init');
  const result = await run(init.args as Record<string, unknown>, io);
  // Leave once the result is out (a --cpu-prof profile is written on this exit).
  process.send!({ type: 'result', ...result, maxRssKb: process.resourceUsage().maxRSS }, () => process.exit(0));
  void label;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
