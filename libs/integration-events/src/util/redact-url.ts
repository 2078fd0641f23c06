/** `user:password@` in any URL-like text, with or without a scheme. */
const USERINFO_PATTERN = /([A-Za-z0-9._~%!$&'()*+,;=-]*):([^@/\s]*)@/g;

/** Query parameters that carry a secret: libpq (and node-postgres) read `?password=` and `?sslpassword=`. */
const SECRET_PARAMETERS = new Set(['password', 'sslpassword']);
/** Those parameters in any URL-like text. */
const SECRET_PARAMETER_PATTERN = /([?&](?:ssl)?password=)[^&#\s]*/gi;

function redactText(text: string): string {
  return text.replace(USERINFO_PATTERN, '$1:***@').replace(SECRET_PARAMETER_PATTERN, '$1***');
}

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
      for (const name of [...parsed.searchParams.keys()]) {
        if (SECRET_PARAMETERS.has(name.toLowerCase())) parsed.searchParams.set(name, '***');
      }
      return parsed.toString();
    }
  } catch {
    // Not a URL: fall through to the textual redaction.
  }
  const redacted = redactText(url);
  return redacted === url ? '<unparsable url>' : redacted;
}

/**
 * Removes the URL's password from a message (errors from drivers may quote it), in every spelling it
 * may take there: as written in the URL, percent-decoded, and re-encoded.
 */
export function redactSecrets(message: string, url: string): string {
  const secrets: string[] = [];
  try {
    const parsed = new URL(url);
    secrets.push(parsed.password);
    for (const [name, value] of parsed.searchParams) {
      // Decoded by URLSearchParams: its encoded spelling is added below.
      if (SECRET_PARAMETERS.has(name.toLowerCase())) secrets.push(value);
    }
    // And as written in the URL, whatever its percent-encoding (`a+b`, `p%21ss`).
    for (const pair of parsed.search.slice(1).split('&')) {
      const equals = pair.indexOf('=');
      if (equals > 0 && SECRET_PARAMETERS.has(safeDecode(pair.slice(0, equals)).toLowerCase())) secrets.push(pair.slice(equals + 1));
    }
  } catch {
    return redactText(message);
  }
  const spellings = new Set<string>();
  for (const written of secrets.filter(Boolean)) {
    // A bare "%" that is not an escape decodes to nothing else: the written form stands for it.
    spellings.add(written).add(encodeURIComponent(written)).add(safeDecode(written));
  }
  if (spellings.size === 0) return message;
  let redacted = message;
  for (const spelling of [...spellings].sort((a, b) => b.length - a.length)) {
    redacted = redacted.split(spelling).join('***');
  }
  return redacted;
}

/** `text` percent-decoded, or as it is when it holds a "%" that is not an escape. */
function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
