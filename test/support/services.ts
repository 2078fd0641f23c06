/** Where the real services are. CI and this machine use the local ones; override with env vars. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const TEST_RABBITMQ_URL = process.env.TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** The broker's host and port, from TEST_RABBITMQ_URL (for tests that put something in front of it). */
export const TEST_RABBITMQ_ADDRESS = (() => {
  const url = new URL(TEST_RABBITMQ_URL);
  return { host: url.hostname, port: Number(url.port || (url.protocol === 'amqps:' ? 5671 : 5672)) };
})();
