import { plainToInstance } from 'class-transformer';
import { getMetadataStorage, validate } from 'class-validator';
import { ISO_8601_PATTERN } from '../envelope/iso-8601';
import { MessageHeaders } from '../envelope/message-headers';
import { refusedKeyReason } from '../publisher/refused-keys';
import type { DiscoveredHandler } from '../discovery/discovered-handler';
import type { IncomingMessage } from './incoming-message';
import { exceedsJsonDepth } from './json-depth';
import { thrownMessage } from './failure-details';
import { withinTime } from '../util/within-time';

/** A message turned into an event instance and its contract fields, or the reason it cannot be. */
export type DecodedMessage =
  | {
      readonly ok: true;
      readonly event: object;
      readonly messageId: string;
      readonly eventName: string;
      readonly eventVersion: number;
      readonly occurredAt: Date;
    }
  | {
      readonly ok: false;
      readonly reason: string;
      /**
       * Set when the class's validation itself failed (an async rule rejected, or validating took longer
       * than the handler's timeout), not the message: a failed attempt, retried as a handler's failure
       * is, not poison. The message's contract fields are then known to be valid.
       */
      readonly validationFailed?: {
        readonly error: Error;
        readonly messageId: string;
        readonly eventName: string;
        readonly eventVersion: number;
      };
      /**
       * Set when the message is of another version of the event, which other handlers of this service
       * take (`DiscoveredHandler.otherVersions`), and came by its event name: their queues got it too.
       * Not poison: acknowledged here.
       */
      readonly otherVersion?: { readonly eventVersion: number; readonly handlers: readonly string[] };
    };

export interface DecodeLimits {
  readonly maxBodyBytes: number;
  readonly maxDepth: number;
}

const MESSAGE_ID_PATTERN = /^[\x21-\x7e]{1,200}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Checks a message against the wire contract and rebuilds the handler's event class from it. Every
 * check that can fail on hostile input runs before the next, more expensive one: size, UTF-8, depth,
 * JSON, shape, keys, headers, then class-transformer and class-validator. A failure is a poison
 * message, which retrying cannot fix; except when an async rule fails (`validationFailed`). Async rules
 * have `timeoutMs` (the handler's, by default) to answer.
 */
export async function decodeMessage(
  handler: DiscoveredHandler,
  message: IncomingMessage,
  limits: DecodeLimits,
  timeoutMs: number = handler.timeoutMs,
): Promise<DecodedMessage> {
  try {
    return await decode(handler, message, limits, timeoutMs);
  } catch (error) {
    // Whatever a message's content makes throw here is the message's fault, not ours: a fault of ours
    // would give it back to its queue, where it comes again at once, for ever.
    return { ok: false, reason: `the message could not be read: ${thrownMessage(error)}` };
  }
}

async function decode(handler: DiscoveredHandler, message: IncomingMessage, limits: DecodeLimits, timeoutMs: number): Promise<DecodedMessage> {
  const poison = (reason: string): DecodedMessage => ({ ok: false, reason });
  const { body, headers } = message;
  if (body.length > limits.maxBodyBytes) {
    return poison(`body of ${body.length} bytes exceeds consumer.maxBodyBytes (${limits.maxBodyBytes})`);
  }

  const messageId = message.messageId;
  if (typeof messageId !== 'string' || !MESSAGE_ID_PATTERN.test(messageId)) {
    return poison('missing or malformed message_id property');
  }
  const headerName = headers[MessageHeaders.EventName];
  const eventName = headerName === undefined ? message.routingKey : headerName;
  if (eventName !== handler.event.name) {
    return poison(`event ${describeHeaderValue(eventName)} is not the event of handler ${handler.name} ("${handler.event.name}")`);
  }
  const eventVersion = toInteger(headers[MessageHeaders.EventVersion]);
  if (eventVersion === undefined) return poison(`missing or malformed ${MessageHeaders.EventVersion} header`);
  if (eventVersion !== handler.event.version) {
    // Routed here by its name, as to every queue of the event: another handler of this service takes it.
    // A copy sent straight to this queue (a requeued dead letter) reached no other, and stays poison.
    const handlers = message.routed ? handler.otherVersions.get(eventVersion) : undefined;
    if (handlers) {
      return { ok: false, reason: `version ${eventVersion} of "${handler.event.name}" is for ${handlers.join(', ')}`, otherVersion: { eventVersion, handlers } };
    }
    return poison(
      `unknown version ${eventVersion} of "${handler.event.name}"; handler ${handler.name} knows version ${handler.event.version}`,
    );
  }
  const occurredAtHeader = headers[MessageHeaders.OccurredAt];
  const occurredAt =
    typeof occurredAtHeader === 'string' && ISO_8601_PATTERN.test(occurredAtHeader) ? new Date(occurredAtHeader) : undefined;
  if (!occurredAt || Number.isNaN(occurredAt.getTime())) {
    return poison(`missing or malformed ${MessageHeaders.OccurredAt} header`);
  }

  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    return poison('body is not valid UTF-8');
  }
  if (exceedsJsonDepth(text, limits.maxDepth)) {
    return poison(`body is nested deeper than consumer.maxDepth (${limits.maxDepth})`);
  }
  let plain: unknown;
  try {
    plain = JSON.parse(text);
  } catch (error) {
    return poison(`body is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof plain !== 'object' || plain === null || Array.isArray(plain)) {
    return poison(`body is ${plain === null ? 'null' : Array.isArray(plain) ? 'an array' : `a ${typeof plain}`}, not a JSON object`);
  }
  const forbidden = findForbiddenKey(plain, '$');
  if (forbidden) return poison(`body has the key ${forbidden}`);

  let event: object;
  try {
    event = plainToInstance(handler.eventClass as new () => object, plain);
  } catch (error) {
    return poison(`body cannot be turned into ${handler.eventClass.name}: ${thrownMessage(error)}`);
  }
  const invalidDate = findInvalidDate(event, '$', limits.maxDepth);
  if (invalidDate) return poison(`body has an invalid date at ${invalidDate}`);
  let violations: Awaited<ReturnType<typeof validate>> = [];
  if (hasValidationRules(handler.eventClass)) {
    let validation: Promise<typeof violations>;
    try {
      validation = validate(event, { forbidUnknownValues: false });
    } catch (error) {
      // A synchronous rule that throws on this message (class-validator runs them at once) does so again.
      return poison(`validating ${handler.eventClass.name} threw: ${thrownMessage(error)}`);
    }
    try {
      // An async rule that hangs must not hold the message.
      violations = await withinTime(validation, timeoutMs, `validating ${handler.eventClass.name} took longer than the handler's timeoutMs (${timeoutMs} ms)`);
    } catch (thrown) {
      // An async rule that looks something up may fail for a while (a database, a service down): the
      // attempt failed, the message may still be good.
      const error = thrown instanceof Error ? thrown : new Error(thrownMessage(thrown));
      return {
        ok: false,
        reason: `validating ${handler.eventClass.name} failed: ${error.message}`,
        validationFailed: { error, messageId, eventName: handler.event.name, eventVersion },
      };
    }
  }
  if (violations.length > 0) {
    const details = violations
      .slice(0, 5)
      .map((v) => `${v.property}: ${Object.values(v.constraints ?? { nested: 'invalid nested value' }).join(', ')}`)
      .join('; ');
    return poison(`body fails the validation rules of ${handler.eventClass.name}: ${details}`);
  }
  return { ok: true, event, messageId, eventName: handler.event.name, eventVersion, occurredAt };
}

const validationRulesByClass = new WeakMap<Function, boolean>();

/**
 * Whether class-validator knows any rule for the class (its own or inherited; nested rules hang off a
 * `@ValidateNested()` on it). Without one, `validate()` can only answer "no violations", after a few
 * microtasks of work per message, so it is skipped. Decorators have all run by the time a handler is
 * discovered, so the answer is kept per class.
 */
function hasValidationRules(eventClass: Function): boolean {
  let known = validationRulesByClass.get(eventClass);
  if (known === undefined) {
    known = getMetadataStorage().getTargetValidationMetadatas(eventClass, '', true, false).length > 0;
    validationRulesByClass.set(eventClass, known);
  }
  return known;
}

/**
 * A header's value for a poison reason, whatever it is: a string is quoted (control characters escaped)
 * and cut to 200 characters; a table (an object, which may lack a prototype or carry a `toString` that
 * is not a function) or another value is named by its type only.
 */
function describeHeaderValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}…` : value);
  if (value === undefined || value === null) return String(value);
  if (typeof value === 'object') return Array.isArray(value) ? '(an array)' : ArrayBuffer.isView(value) ? '(bytes)' : '(a table)';
  return `(a ${typeof value}: ${String(value).slice(0, 50)})`;
}

function toInteger(value: unknown): number | undefined {
  const number = typeof value === 'string' && /^\d{1,9}$/.test(value) ? Number(value) : value;
  return typeof number === 'number' && Number.isSafeInteger(number) ? number : undefined;
}

/**
 * Path of the first Date that class-transformer built from something that is not a date. The path is
 * built on the way back from a find only: a valid body allocates no strings here.
 */
export function findInvalidDate(value: unknown, path: string, depthLeft: number): string | undefined {
  const found = invalidDateBelow(value, depthLeft);
  return found === undefined ? undefined : path + found;
}

function invalidDateBelow(value: unknown, depthLeft: number): string | undefined {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? '' : undefined;
  if (typeof value !== 'object' || value === null || depthLeft <= 0) return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = invalidDateBelow(value[i], depthLeft - 1);
      if (found !== undefined) return `[${i}]${found}`;
    }
    return undefined;
  }
  for (const key of Object.keys(value)) {
    const found = invalidDateBelow((value as Record<string, unknown>)[key], depthLeft - 1);
    if (found !== undefined) return `.${key}${found}`;
  }
  return undefined;
}

/** The first refused key (see `refusedKeyReason`), its path and why; depth is already bounded. */
function findForbiddenKey(value: unknown, path: string): string | undefined {
  const found = forbiddenKeyBelow(value);
  return found === undefined ? undefined : `"${found.key}" at ${path}${found.path}, ${refusedKeyReason(found.key)}`;
}

/** The first forbidden key under `value` and the path to the object holding it, built on the way back only. */
function forbiddenKeyBelow(value: unknown): { key: string; path: string } | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = forbiddenKeyBelow(value[i]);
      if (found) return { key: found.key, path: `[${i}]${found.path}` };
    }
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (refusedKeyReason(key) !== undefined) return { key, path: '' };
    const found = forbiddenKeyBelow((value as Record<string, unknown>)[key]);
    if (found) return { key: found.key, path: `.${key}${found.path}` };
  }
  return undefined;
}
