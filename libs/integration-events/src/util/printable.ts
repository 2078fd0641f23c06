/** C0 and C1 control characters: newlines and terminal escapes (ESC, CSI) among them. */
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * `text` safe to write to a log or a terminal when it comes from a message (an id, a header, a key of
 * its body): control characters are written as `\uXXXX`, so a value cannot forge log lines or drive the
 * operator's terminal, and it is cut to `max` characters.
 */
export function printable(text: string, max = 1_000): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return cut.replace(CONTROL_CHARACTERS, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
