import { InProcessBroker } from 'nestjs-integration-events';

/** Where a service keeps its data. */
export type DatabaseChoice = { readonly kind: 'postgres'; readonly url: string } | { readonly kind: 'sqlite' };

/** How a service talks to the others. */
export type TransportChoice = { readonly kind: 'rabbitmq'; readonly url: string } | { readonly kind: 'in-process'; readonly broker: InProcessBroker };

/** Settings of one example service. */
export interface ServiceConfig {
  readonly database: DatabaseChoice;
  readonly transport: TransportChoice;
  readonly port: number;
}

/**
 * How the example runs, from the environment:
 * - neither `DATABASE_URL` nor `RABBITMQ_URL`: **embedded** — both services in one process, each on its own
 *   in-memory SQLite database, talking through one in-process broker. Node.js alone is enough.
 * - both: **services** — each service in its own process, on PostgreSQL and RabbitMQ.
 * - only one: refused; mixing would be neither.
 */
export type ExampleMode = { readonly kind: 'embedded' } | { readonly kind: 'services'; readonly databaseUrl: string; readonly rabbitmqUrl: string };

export function exampleMode(env: NodeJS.ProcessEnv = process.env): ExampleMode {
  const databaseUrl = env.DATABASE_URL || undefined;
  const rabbitmqUrl = env.RABBITMQ_URL || undefined;
  if (!databaseUrl && !rabbitmqUrl) return { kind: 'embedded' };
  if (databaseUrl && rabbitmqUrl) return { kind: 'services', databaseUrl, rabbitmqUrl };
  throw new Error(
    `Only ${databaseUrl ? 'DATABASE_URL' : 'RABBITMQ_URL'} is set. Set both (PostgreSQL + RabbitMQ, one process per ` +
      'service), or neither (everything in one process on SQLite and an in-process broker).',
  );
}

/** The port from `PORT`, or the default. */
export function portFrom(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  const port = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`${name} must be a port number, got "${raw}"`);
  return port;
}
