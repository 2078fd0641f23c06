import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/**
 * How the tests that need a vhost of their own run RabbitMQ's `rabbitmqctl`: on this machine by default,
 * or as `TEST_RABBITMQCTL` says, split on spaces, for a broker elsewhere, e.g. the docker-compose one:
 * `TEST_RABBITMQCTL="docker compose exec -T rabbitmq rabbitmqctl" npm test`.
 */
const COMMAND = (process.env.TEST_RABBITMQCTL || 'rabbitmqctl').split(/\s+/).filter((part) => part.length > 0);

export async function rabbitmqctl(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  const [file, ...prefix] = COMMAND;
  try {
    return await promisify(execFile)(file!, [...prefix, ...args]);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') {
      throw new Error(
        `${file} was not found: the tests that make a vhost of their own run rabbitmqctl. With the broker in docker compose, ` +
          'run TEST_RABBITMQCTL="docker compose exec -T rabbitmq rabbitmqctl" npm test',
      );
    }
    throw error;
  }
}
