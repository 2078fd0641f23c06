/**
 * Returns the URL with its password replaced by `***`, for logs and error messages.
 * A string that does not parse as a URL is replaced whole: it may be a credential.
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<unparsable url>';
  }
}

/** Removes every occurrence of the URL's password from a message (errors from drivers may quote it). */
export function redactSecrets(message: string, url: string): string {
  let password = '';
  try {
    password = decodeURIComponent(new URL(url).password);
  } catch {
    return message;
  }
  if (!password) return message;
  return message.split(password).join('***').split(encodeURIComponent(password)).join('***');
}
