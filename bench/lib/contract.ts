/**
 * The one event every workload moves: an "order placed" of about 300 bytes of JSON, numbered `n` so that
 * consumers can count each message (exactly once, none lost) without keeping its id.
 */
import { randomUUID } from 'node:crypto';
import type { Options } from 'amqplib';

export const EVENT_NAME = 'bench.order-placed';
export const CUSTOMER_ID = 'customer-0001';
export const AMOUNT_CENTS = 1_250;
export const PLACED_AT = '2026-11-26T06:30:00.123Z';
export const LINES = [
  { sku: 'SKU-000001', quantity: 2, priceCents: 4_500 },
  { sku: 'SKU-000002', quantity: 1, priceCents: 3_345 },
];
/** Target body size: about 300 bytes for a 5-digit `n`. */
const BODY_BYTES = 300;

const bare = (n: number, orderId: string, note: string): string =>
  JSON.stringify({ n, orderId, customerId: CUSTOMER_ID, amountCents: AMOUNT_CENTS, placedAt: PLACED_AT, lines: LINES, note });
export const NOTE = 'x'.repeat(Math.max(0, BODY_BYTES - bare(10_000, randomUUID(), '').length));

/** The JSON body of event `n`: the same bytes `publish()` writes for `new BenchOrderPlaced(n, orderId)`. */
export function eventBody(n: number, orderId: string = randomUUID()): string {
  return bare(n, orderId, NOTE);
}

/** The body split around `n` and the order id, for building it in SQL: before + n + between + uuid + after. */
export function sqlPayloadParts(): { before: string; between: string; after: string } {
  const sample = eventBody(424242, '@@ID@@');
  const [head, after] = sample.split('@@ID@@') as [string, string];
  const [before, between] = head.split('424242') as [string, string];
  return { before, between, after };
}

/** The library's wire format (README, "Message format"), for raw amqplib publishers. */
export function wireMessage(n: number, sourceService = 'bench'): { body: Buffer; options: Options.Publish } {
  const messageId = randomUUID();
  return {
    body: Buffer.from(eventBody(n)),
    options: {
      messageId,
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      persistent: true,
      type: EVENT_NAME,
      appId: sourceService,
      correlationId: messageId,
      timestamp: Math.floor(Date.now() / 1000),
      headers: {
        'ie-event-name': EVENT_NAME,
        'ie-event-version': 1,
        'ie-occurred-at': new Date().toISOString(),
        'ie-source-service': sourceService,
        'ie-correlation-id': messageId,
      },
    },
  };
}

/** `n` of a JSON body, for plain consumers (they parse it, as a real consumer would). */
export function numberOf(body: Buffer): number {
  const parsed = JSON.parse(body.toString('utf8')) as { n?: unknown };
  return typeof parsed.n === 'number' ? parsed.n : -1;
}

/**
 * Counts handler calls per message number in a consumer process: fixed-size arrays allocated up front
 * (1 byte, plus 8 with `recordTimes`, per expected message), so counting never grows the heap.
 */
export class HandledCounter {
  private readonly calls: Uint8Array;
  readonly handledAt: Float64Array;
  distinct = 0;
  duplicates = 0;
  unexpected = 0;
  first = 0;
  last = 0;
  /** With `watchFrom`: how many distinct messages numbered from it on were handled. */
  private distinctFrom = 0;
  private watchFrom = Infinity;
  private onRangeHandled: () => void = () => undefined;

  constructor(
    readonly expected: number,
    private readonly recordTimes: boolean,
    private readonly onAllHandled: () => void,
    private readonly clock: () => number,
    private readonly onFirst: () => void = () => undefined,
  ) {
    this.calls = new Uint8Array(expected);
    this.handledAt = new Float64Array(recordTimes ? expected : 0);
  }

  /** Calls `callback` once every message numbered `from`…expected-1 (a paced run's warm-up) was handled. */
  watchRange(from: number, callback: () => void): void {
    this.watchFrom = from;
    this.onRangeHandled = callback;
  }

  handle(n: number): void {
    const t = this.clock();
    if (!Number.isInteger(n) || n < 0 || n >= this.expected) {
      this.unexpected++;
      return;
    }
    if (this.first === 0) {
      this.first = t;
      this.onFirst();
    }
    this.last = t;
    if (this.calls[n] !== 0) {
      this.duplicates++;
      return;
    }
    this.calls[n] = 1;
    if (this.recordTimes) this.handledAt[n] = t;
    if (n >= this.watchFrom && ++this.distinctFrom === this.expected - this.watchFrom) this.onRangeHandled();
    if (++this.distinct === this.expected) this.onAllHandled();
  }

  result(): Record<string, unknown> {
    return {
      counts: { distinct: this.distinct, duplicates: this.duplicates, unexpected: this.unexpected },
      first: this.first,
      last: this.last,
      handledAt: this.handledAt,
    };
  }
}

/**
 * An id shaped as the library's `newMessageId()` makes it, in SQL: a version 7 UUID, the Unix time in ms
 * (`msSql`, by default the statement's execution), then the random bits (and variant) of a version 4 one.
 */
export function timeOrderedUuidSql(msSql = '(extract(epoch FROM clock_timestamp()) * 1000)::bigint'): string {
  return `(lpad(to_hex(${msSql}), 12, '0') || '7' || substr(replace(gen_random_uuid()::text, '-', ''), 14))::uuid`;
}
