/**
 * One headers object for every message a publisher (or a consumer copying messages to its retry and
 * dead-letter queues) sends, refilled for each, instead of a new one per message.
 *
 * amqplib copies a publish's `headers` by making the object the prototype of a new one
 * (`Object.create(options.headers)`). V8 gives every object that becomes a prototype a map of its own,
 * in the old generation: a new headers object per message costs several µs and a few hundred bytes of
 * old-generation garbage. A relay publishing thousands of messages a second (or a consumer whose
 * handler fails every message) grows its old generation by megabytes a second between full GCs, and
 * its RSS swings with it (bench/README.md, "What each optimisation bought"). An object that stays the
 * same becomes a prototype once.
 *
 * amqplib encodes the headers inside `publish()` / `sendToQueue()`: the object is free again as soon as
 * that call has returned. So `fill()` and the call it is for must run with no `await` between them.
 */
export class ReusedHeadersTable {
  /** Without a prototype, so that any header name (even `__proto__`) is an ordinary property. */
  private readonly table: Record<string, unknown> = Object.create(null) as Record<string, unknown>;

  /** Makes the table hold exactly `headers` (own enumerable properties) and returns it. */
  fill(headers: Readonly<Record<string, unknown>>): Record<string, unknown> {
    const table = this.table;
    for (const name in table) {
      if (!Object.hasOwn(headers, name)) delete table[name];
    }
    for (const name of Object.keys(headers)) table[name] = headers[name];
    return table;
  }
}
