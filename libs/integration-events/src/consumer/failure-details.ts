import type { FailureDetails } from './disposition';

const MAX_MESSAGE = 1_000;
const MAX_STACK_LINES = 20;
const MAX_STACK = 4_000;

/**
 * Name, message and a trimmed stack of whatever a handler threw, for headers and the hook. Never
 * throws, whatever was thrown: an `Error` whose `message` is not a string (a subclass that redeclares
 * the field), or whose properties are getters that throw, is still described.
 */
export function failureDetails(error: unknown, failedAt = new Date()): FailureDetails {
  if (error instanceof Error) {
    try {
      const stack = stringProperty(error, 'stack');
      return {
        name: trim(stringProperty(error, 'name') || 'Error', 200),
        message: trim(stringProperty(error, 'message') ?? '', MAX_MESSAGE),
        stack: stack ? trim(stack.split('\n').slice(0, MAX_STACK_LINES).join('\n'), MAX_STACK) : undefined,
        failedAt,
      };
    } catch {
      // A getter threw: described as a value below.
    }
  }
  return { name: 'NonError', message: trim(`non-Error thrown: ${safeString(error)}`, MAX_MESSAGE), stack: undefined, failedAt };
}

/** `error[key]` as text: a string as it is, nothing for undefined or null, anything else converted. */
function stringProperty(error: Error, key: 'name' | 'message' | 'stack'): string | undefined {
  const value: unknown = error[key];
  if (typeof value === 'string') return value;
  return value === undefined || value === null ? undefined : safeString(value);
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
    try {
      return Object.prototype.toString.call(value);
    } catch {
      return '[unprintable]';
    }
  }
}
