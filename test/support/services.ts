/** Where the real services are. CI and this machine use the local ones; override with env vars. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const TEST_RABBITMQ_URL = process.env.TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

function addressOf(url: string, defaultPort: number): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port || defaultPort) };
}

/** The broker's host and port, from TEST_RABBITMQ_URL (for tests that put something in front of it). */
export const TEST_RABBITMQ_ADDRESS = addressOf(TEST_RABBITMQ_URL, new URL(TEST_RABBITMQ_URL).protocol === 'amqps:' ? 5671 : 5672);

/** The database's host and port, from TEST_DATABASE_URL. */
export const TEST_DATABASE_ADDRESS = addressOf(TEST_DATABASE_URL, 5432);

/** The broker's user name and password, from TEST_RABBITMQ_URL. */
export const TEST_RABBITMQ_CREDENTIALS = (() => {
  const url = new URL(TEST_RABBITMQ_URL);
  return { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
})();

/**
 * TEST_RABBITMQ_URL (its credentials and vhost) through something local on `port`: a proxy, or a TLS
 * terminator (`protocol: 'amqps:'`, `host: 'localhost'` for its certificate).
 */
export function rabbitMqUrlVia(port: number, { protocol = 'amqp:', host = '127.0.0.1', search = '' } = {}): string {
  const url = new URL(TEST_RABBITMQ_URL);
  url.protocol = protocol;
  url.hostname = host;
  url.port = String(port);
  url.search = search;
  return url.toString();
}

/** TEST_DATABASE_URL (its credentials and database) through a local proxy on `port`. */
export function databaseUrlVia(port: number): string {
  const url = new URL(TEST_DATABASE_URL);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return url.toString();
}
