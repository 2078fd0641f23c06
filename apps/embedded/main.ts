import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { InProcessBroker } from 'nestjs-integration-events';
import { portFrom } from '../shared/example-config';
import { installMetrics } from '../shared/metrics';
import { startOrdering } from '../ordering/src/start-ordering';
import { startPayments } from '../payments/src/start-payments';

/**
 * The example with Node.js alone: both services in this one process, each on its own in-memory SQLite
 * database, talking through one in-process broker passed explicitly to both (no global state). Nothing
 * survives a restart. Set DATABASE_URL and RABBITMQ_URL to run them as separate processes instead.
 */
async function main(): Promise<void> {
  const logger = new Logger('Example');
  logger.log(
    'Embedded mode: both services in one process, on in-memory SQLite and an in-process broker ' +
      '(set DATABASE_URL and RABBITMQ_URL to use PostgreSQL and RabbitMQ)',
  );
  installMetrics();
  const broker = new InProcessBroker();
  const payments = await startPayments({ database: { kind: 'sqlite' }, transport: { kind: 'in-process', broker }, port: portFrom(process.env, 'PAYMENTS_PORT', 3002) }, { ownsProcess: false });
  const ordering = await startOrdering({ database: { kind: 'sqlite' }, transport: { kind: 'in-process', broker }, port: portFrom(process.env, 'ORDERING_PORT', 3001) }, { ownsProcess: false });
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await ordering.close();
    await payments.close();
    broker.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

main().catch((error: unknown) => {
  new Logger('Example').error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
