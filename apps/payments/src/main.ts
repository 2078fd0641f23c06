import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { exampleMode, portFrom } from '../../shared/example-config';
import { installMetrics } from '../../shared/metrics';
import { startPayments } from './start-payments';

/** The payments service on its own (services mode: PostgreSQL + RabbitMQ). */
async function main(): Promise<void> {
  const mode = exampleMode();
  if (mode.kind !== 'services') throw new Error('Run the example with `npm start`; this entry point needs DATABASE_URL and RABBITMQ_URL');
  installMetrics();
  new Logger('Payments').log('Running on PostgreSQL and RabbitMQ (services mode), one process per service');
  await startPayments({
    database: { kind: 'postgres', url: mode.databaseUrl },
    transport: { kind: 'rabbitmq', url: mode.rabbitmqUrl },
    port: portFrom(process.env, 'PORT', 3002),
  });
}

main().catch((error: unknown) => {
  new Logger('Payments').error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
