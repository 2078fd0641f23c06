import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { rabbitmqctl } from './rabbitmqctl';
import { TEST_DATABASE_URL, TEST_RABBITMQ_CREDENTIALS, TEST_RABBITMQ_URL } from './services';

/**
 * A private database and RabbitMQ vhost, for tests that run whole services whose schema, exchange and
 * queue names are fixed (the example apps): nothing they create can meet another test's.
 */
export interface IsolatedEnvironment {
  readonly databaseUrl: string;
  readonly rabbitmqUrl: string;
  cleanup(): Promise<void>;
}

export async function createIsolatedEnvironment(): Promise<IsolatedEnvironment> {
  const id = randomBytes(4).toString('hex');
  const database = `e2e_${id}`;
  const vhost = `e2e-${id}`;

  const admin = new Client({ connectionString: TEST_DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  try {
    await rabbitmqctl('add_vhost', vhost);
    await rabbitmqctl('set_permissions', '-p', vhost, TEST_RABBITMQ_CREDENTIALS.username, '.*', '.*', '.*');
  } catch (error) {
    // Nothing left behind when the vhost cannot be made (no rabbitmqctl, say).
    await rabbitmqctl('delete_vhost', vhost).catch(() => undefined);
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
    throw error;
  }

  const databaseUrl = new URL(TEST_DATABASE_URL);
  databaseUrl.pathname = `/${database}`;
  const rabbitmqUrl = new URL(TEST_RABBITMQ_URL);
  rabbitmqUrl.pathname = `/${vhost}`;

  return {
    databaseUrl: databaseUrl.toString(),
    rabbitmqUrl: rabbitmqUrl.toString(),
    async cleanup() {
      try {
        await rabbitmqctl('delete_vhost', vhost);
      } finally {
        await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
        await admin.end();
      }
    },
  };
}
