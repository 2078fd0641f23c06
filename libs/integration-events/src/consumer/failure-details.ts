import type { FailureDetails } from './disposition';

const MAX_MESSAGE = 1_000;
const MAX_STACK_LINES = 20;
const MAX_STACK = 4_000;

/** Name, message and a trimmed stack of whatever a handler threw, for headers and the hook. */
export function failureDetails(error: unknown, failedAt = new Date()): FailureDetails {
  if (error instanceof Error) {
    return {
      name: trim(error.name || 'Error', 200),
      message: trim(error.message, MAX_MESSAGE),
      stack: error.stack ? trim(error.stack.split('\n').slice(0, MAX_STACK_LINES).join('\n'), MAX_STACK) : undefined,
      failedAt,
    };
  }
  return { name: 'NonError', message: trim(`non-Error thrown: ${safeString(error)}`, MAX_MESSAGE), stack: undefined, failedAt };
}

/** Details of a message refused before any handler call. */
export function poisonDetails(reason: string, failedAt = new Date()): FailureDetails {
  return { name: 'PoisonMessage', message: trim(reason, MAX_MESSAGE), stack: undefined, failedAt };
}

function trim(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function safeString(value: unknown): string {
  try {
    return typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  } catch {
    return Object.prototype.toString.call(value);
  }
}
