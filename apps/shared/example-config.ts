/** Settings of the example services, from the environment, defaulting to the local services. */
export interface ExampleConfig {
  readonly databaseUrl: string;
  readonly rabbitmqUrl: string;
  readonly port: number;
}

export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
export const DEFAULT_RABBITMQ_URL = 'amqp://guest:guest@127.0.0.1:5672';

export function exampleConfig(defaultPort: number, env: NodeJS.ProcessEnv = process.env): ExampleConfig {
  const port = Number(env.PORT ?? defaultPort);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`PORT must be a port number, got "${env.PORT}"`);
  return {
    databaseUrl: env.DATABASE_URL ?? DEFAULT_DATABASE_URL,
    rabbitmqUrl: env.RABBITMQ_URL ?? DEFAULT_RABBITMQ_URL,
    port,
  };
}
