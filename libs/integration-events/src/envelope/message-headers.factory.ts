import { InvalidPublishOptionsError } from '../errors/invalid-publish-options.error';
import { MessageHeaders, RESERVED_HEADER_PREFIXES, ROUTING_HEADERS } from './message-headers';
import type { HeaderValue, MessageHeadersRecord } from './outgoing-message';

const HEADER_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const MAX_APPLICATION_HEADERS = 32;
const MAX_HEADER_STRING_LENGTH = 4_096;
/**
 * amqplib encodes a message's header table into one 64 KiB buffer. The application's share is half of
 * it: the rest is for the library's own headers, trace headers and, on a failure, the retry and
 * dead-letter headers (an error message and stack of up to 5,000 characters).
 */
const MAX_APPLICATION_HEADER_BYTES = 32_768;
/** Below -2^63 amqplib cannot encode an integer; from 2^50 up it encodes numbers as integers, so no fraction. */
const MIN_HEADER_INTEGER = -(2 ** 63);
const MAX_HEADER_FRACTION = 2 ** 50;
/** NUL (PostgreSQL's jsonb refuses it) and unpaired surrogates (not encodable as UTF-8). */
const UNSENDABLE_CHARACTER = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const CORRELATION_ID_PATTERN = /^[\x21-\x7e]{1,200}$/;

/** What the contract headers of one message are built from. */
export interface ContractHeaderValues {
  readonly eventName: string;
  readonly eventVersion: number;
  readonly occurredAt: Date;
  readonly sourceService: string;
  readonly correlationId: string;
  readonly causationId?: string | undefined;
}

/**
 * Builds the full header set of a message: the caller's application headers (validated), then the
 * `ie-*` contract headers, which always win.
 */
export function buildMessageHeaders(
  contract: ContractHeaderValues,
  applicationHeaders: MessageHeadersRecord | undefined,
): MessageHeadersRecord {
  return {
    ...validateApplicationHeaders(applicationHeaders),
    [MessageHeaders.EventName]: contract.eventName,
    [MessageHeaders.EventVersion]: contract.eventVersion,
    [MessageHeaders.OccurredAt]: contract.occurredAt.toISOString(),
    [MessageHeaders.SourceService]: contract.sourceService,
    [MessageHeaders.CorrelationId]: contract.correlationId,
    ...(contract.causationId === undefined ? {} : { [MessageHeaders.CausationId]: contract.causationId }),
  };
}

/**
 * Whether `value` may be a correlation or causation id: 1-200 printable ASCII characters, no spaces
 * (it travels as a header and in the AMQP `correlation_id` property, which holds at most 255 bytes).
 */
export function isValidCorrelationId(value: unknown): value is string {
  return typeof value === 'string' && CORRELATION_ID_PATTERN.test(value);
}

/** Checks a correlation (or causation) id given by the caller; throws `InvalidPublishOptionsError` naming `option`. */
export function validateCorrelationId(value: unknown, option = 'correlationId'): string {
  if (!isValidCorrelationId(value)) {
    throw new InvalidPublishOptionsError(option, 'use 1-200 printable ASCII characters without spaces.');
  }
  return value;
}

/** The name of a getter on `object`'s prototypes below the root one (`Object.prototype`, of any realm), if any. */
function getterAlongPrototypes(object: object): string | undefined {
  for (
    let current = Object.getPrototypeOf(object) as object | null;
    current !== null && Object.getPrototypeOf(current) !== null;
    current = Object.getPrototypeOf(current) as object | null
  ) {
    for (const [name, descriptor] of Object.entries(Object.getOwnPropertyDescriptors(current))) {
      if (descriptor.get) return name;
    }
  }
  return undefined;
}

/**
 * The caller's application headers, checked: an object of own fields (names not starting with `ie-` or
 * `x-`), values a string, a number or a boolean. Throws `InvalidPublishOptionsError` naming the header.
 */
export function validateApplicationHeaders(headers: MessageHeadersRecord | undefined): MessageHeadersRecord {
  if (headers === undefined) return {};
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) {
    throw new InvalidPublishOptionsError('headers', 'pass an object of header names to values.');
  }
  // Only own fields are read: a Map's entries, a fetch Headers' or a String object's contents, or values
  // behind a class's getters or methods would not be, and the event would go without the headers meant
  // for it. (By tag and by the prototype's own prototype, so that objects of another realm, a vm
  // context's, count as what they are.)
  const tag = Object.prototype.toString.call(headers);
  if (tag !== '[object Object]') {
    throw new InvalidPublishOptionsError('headers', `pass a plain object of header names to values, not a ${tag.slice(8, -1)}.`);
  }
  const prototype = Object.getPrototypeOf(headers) as object | null;
  if (prototype !== null && Object.getPrototypeOf(prototype) !== null) {
    const kind = `a ${(headers as object).constructor?.name || 'class'} instance`;
    const getter = getterAlongPrototypes(headers);
    if (getter !== undefined) {
      throw new InvalidPublishOptionsError('headers', `pass a plain object of header names to values, not ${kind} with a getter ("${getter}"), whose values are not read.`);
    }
    if (Object.keys(headers).length === 0) {
      throw new InvalidPublishOptionsError('headers', `pass a plain object of header names to values, not ${kind} without fields of its own, whose contents are not read.`);
    }
  }
  const entries = Object.entries(headers);
  if (entries.length > MAX_APPLICATION_HEADERS) {
    throw new InvalidPublishOptionsError('headers', `pass at most ${MAX_APPLICATION_HEADERS} headers.`);
  }
  const result: MessageHeadersRecord = {};
  let bytes = 0;
  for (const [name, value] of entries) {
    if (!HEADER_NAME_PATTERN.test(name)) {
      throw new InvalidPublishOptionsError(
        `headers.${name}`,
        'header names are 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit.',
      );
    }
    const lower = name.toLowerCase();
    if (RESERVED_HEADER_PREFIXES.some((prefix) => lower.startsWith(prefix))) {
      throw new InvalidPublishOptionsError(
        `headers.${name}`,
        `names starting with ${RESERVED_HEADER_PREFIXES.map((p) => `"${p}"`).join(' or ')} are reserved ` +
          '(the library\'s contract headers and RabbitMQ\'s own).',
      );
    }
    if (ROUTING_HEADERS.has(name)) {
      throw new InvalidPublishOptionsError(
        `headers.${name}`,
        'RabbitMQ reads the headers "CC" and "BCC" as more routing keys of the message (and refuses it unless they are arrays); use another name.',
      );
    }
    if (!isHeaderValue(value)) {
      throw new InvalidPublishOptionsError(
        `headers.${name}`,
        `values are strings (at most ${MAX_HEADER_STRING_LENGTH} characters, no NUL or unpaired surrogate), ` +
          'booleans, or numbers AMQP carries: integers from -2^63, fractions below 2^50 in magnitude.',
      );
    }
    bytes += name.length + (typeof value === 'string' ? Buffer.byteLength(value) : 8);
    result[name] = value;
  }
  if (bytes > MAX_APPLICATION_HEADER_BYTES) {
    throw new InvalidPublishOptionsError(
      'headers',
      `they take ${bytes} bytes (names and values, UTF-8); at most ${MAX_APPLICATION_HEADER_BYTES} fit beside the library's own in an AMQP header table.`,
    );
  }
  return result;
}

function isHeaderValue(value: unknown): value is HeaderValue {
  if (typeof value === 'boolean') return true;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return false;
    return Number.isInteger(value) ? value >= MIN_HEADER_INTEGER : Math.abs(value) < MAX_HEADER_FRACTION;
  }
  return typeof value === 'string' && value.length <= MAX_HEADER_STRING_LENGTH && !UNSENDABLE_CHARACTER.test(value);
}
