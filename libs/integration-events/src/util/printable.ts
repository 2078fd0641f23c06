/**
 * C0 and C1 control characters (newlines and terminal escapes, ESC and CSI, among them), the line and
 * paragraph separators, and the bidirectional overrides that reorder what a terminal shows.
 */
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` safe to write to a log or a terminal when it comes from a message (an id, a header, a key of
 * its body): control characters are written as `\uXXXX`, so a value cannot forge log lines or drive the
 * operator's terminal, and it is cut to `max` characters.
 */
export function printable(text: string, max = 1_000): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return cut.replace(CONTROL_CHARACTERS, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A message id (the AMQP property, the publisher's choice) for a log line: printable, at most 200 characters. */
export function printableId(messageId: unknown): string {
  return typeof messageId === 'string' ? printable(messageId, 200) : '(no message_id)';
}

/**
 * `value` as indented JSON for a terminal: JSON escapes the C0 controls in strings already; the C1
 * controls, separators and bidirectional overrides it leaves are escaped too (they can only be in strings).
 */
export function printableJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(/[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
