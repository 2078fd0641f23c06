import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { exampleMode, portFrom } from '../../shared/example-config';
import { installMetrics } from '../../shared/metrics';
import { startOrdering } from './start-ordering';

/** The ordering service on its own (services mode: PostgreSQL + RabbitMQ). */
async function main(): Promise<void> {
  const mode = exampleMode();
  if (mode.kind !== 'services') throw new Error('Run the example with `npm start`; this entry point needs DATABASE_URL and RABBITMQ_URL');
  installMetrics();
  new Logger('Ordering').log('Running on PostgreSQL and RabbitMQ (services mode), one process per service');
  await startOrdering({
    database: { kind: 'postgres', url: mode.databaseUrl },
    transport: { kind: 'rabbitmq', url: mode.rabbitmqUrl },
    port: portFrom(process.env, 'PORT', 3001),
  });
}

main().catch((error: unknown) => {
  new Logger('Ordering').error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
