/** `user:password@` in any URL-like text, with or without a scheme. */
const USERINFO_PATTERN = /([A-Za-z0-9._~%!$&'()*+,;=-]*):([^@/\s]*)@/g;

/**
 * Returns the URL with its password replaced by `***`, for logs and error messages. Works on strings
 * that are not proper URLs too (a missing `amqp://` makes `new URL()` read the user as a scheme):
 * anything shaped like `user:password@` loses its password, and anything else that does not parse is
 * replaced whole, as it may be a credential.
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.host) {
      if (parsed.password) parsed.password = '***';
      return parsed.toString();
    }
  } catch {
    // Not a URL: fall through to the textual redaction.
  }
  const redacted = url.replace(USERINFO_PATTERN, '$1:***@');
  return redacted === url ? '<unparsable url>' : redacted;
}

/**
 * Removes the URL's password from a message (errors from drivers may quote it), in every spelling it
 * may take there: as written in the URL, percent-decoded, and re-encoded.
 */
export function redactSecrets(message: string, url: string): string {
  let written = '';
  try {
    written = new URL(url).password;
  } catch {
    return message.replace(USERINFO_PATTERN, '$1:***@');
  }
  if (!written) return message;
  const spellings = new Set([written, encodeURIComponent(written)]);
  try {
    spellings.add(decodeURIComponent(written));
  } catch {
    // A bare "%" that is not an escape: the written form is the only one.
  }
  let redacted = message;
  for (const spelling of [...spellings].filter(Boolean).sort((a, b) => b.length - a.length)) {
    redacted = redacted.split(spelling).join('***');
  }
  return redacted;
}
