import { isInstance } from '../util/is-instance';
import type { FailureDetails } from './disposition';

const MAX_MESSAGE = 1_000;
const MAX_STACK_LINES = 20;
const MAX_STACK = 4_000;

/** How many causes (`error.cause`, its cause, …) a failure's details follow. */
const MAX_CAUSES = 5;
const MAX_CAUSE_STACK_LINES = 10;

/**
 * Name, message and a trimmed stack of whatever a handler threw, for headers and the hook. An error's
 * `cause` chain (as `new NonRetryableError('refused', { cause })` keeps the original) is followed: each
 * cause is named after the message ("; caused by TypeError: …") and its stack after the error's
 * ("Caused by: …"), since V8's stack leaves it out. Never throws, whatever was thrown: an `Error` whose
 * `message` is not a string (a subclass that redeclares the field), or whose properties are getters
 * that throw, is still described.
 */
export function failureDetails(error: unknown, failedAt = new Date()): FailureDetails {
  if (isInstance(error, Error)) {
    try {
      const stack = stringProperty(error, 'stack');
      const causes = causesOf(error);
      const ownStack = stack ? stack.split('\n').slice(0, MAX_STACK_LINES).join('\n') : '';
      const causeStacks = causes
        .map((cause) => `Caused by: ${(cause.stack ?? cause.summary).split('\n').slice(0, MAX_CAUSE_STACK_LINES).join('\n')}`)
        .join('\n');
      const joinedStack = joinWithin(ownStack, causeStacks, MAX_STACK, '\n');
      return {
        name: trim(stringProperty(error, 'name') || 'Error', 200),
        message: joinWithin(stringProperty(error, 'message') ?? '', causes.map((cause) => `caused by ${cause.summary}`).join('; '), MAX_MESSAGE, '; '),
        stack: joinedStack === '' ? undefined : joinedStack,
        failedAt,
      };
    } catch {
      // A getter threw: described as a value below.
    }
  }
  return { name: 'NonError', message: trim(`non-Error thrown: ${safeString(error)}`, MAX_MESSAGE), stack: undefined, failedAt };
}

/** The causes of `error`, outermost first (at most MAX_CAUSES; a cycle ends the chain). */
function causesOf(error: Error): Array<{ summary: string; stack: string | undefined }> {
  const causes: Array<{ summary: string; stack: string | undefined }> = [];
  const seen = new Set<unknown>([error]);
  try {
    let cause: unknown = error.cause;
    while (cause !== undefined && cause !== null && !seen.has(cause) && causes.length < MAX_CAUSES) {
      seen.add(cause);
      if (!(cause instanceof Error)) {
        causes.push({ summary: safeString(cause), stack: undefined });
        break;
      }
      causes.push({ summary: `${stringProperty(cause, 'name') || 'Error'}: ${stringProperty(cause, 'message') ?? ''}`, stack: stringProperty(cause, 'stack') });
      cause = cause.cause;
    }
  } catch {
    // A cause's getter threw: the chain ends there; the error itself is still described.
  }
  return causes;
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

/**
 * `head`, `separator` and `tail` within `max` characters. When they do not fit, `head` (the error's own
 * message or stack) gets what `tail` (its causes) leaves, but at least half: a long outer message must
 * not cut the causes, which hold the root of the failure, entirely.
 */
function joinWithin(head: string, tail: string, max: number, separator: string): string {
  if (tail === '') return trim(head, max);
  if (head === '') return trim(tail, max);
  const headRoom = Math.max(Math.floor(max / 2), max - separator.length - tail.length);
  return trim(`${trim(head, headRoom)}${separator}${tail}`, max);
}

function trim(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * The message of whatever was thrown (an Error, `null`, a string, an object without a prototype);
 * never throws itself.
 */
export function thrownMessage(thrown: unknown): string {
  try {
    if (thrown instanceof Error) return String(thrown.message);
    if (typeof thrown === 'object' && thrown !== null) {
      const { message } = thrown as { message?: unknown };
      if (typeof message === 'string') return message;
    }
  } catch {
    // A getter, or a proxy, that throws: described below.
  }
  return safeString(thrown);
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
