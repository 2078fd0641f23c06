import { Logger, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { ServiceConfig } from '../../shared/example-config';
import { PaymentsModule } from './payments.module';

/** Creates and starts the payments service's HTTP application (health and metrics). */
export async function startPayments(config: ServiceConfig, { ownsProcess = true } = {}): Promise<INestApplication> {
  const app = await NestFactory.create(PaymentsModule.register(config));
  // Alone in its process, the service shuts down gracefully on SIGTERM; embedded, the host does it.
  if (ownsProcess) app.enableShutdownHooks();
  try {
    await app.listen(config.port, '127.0.0.1');
  } catch (error) {
    // Its consumers and relay started at init: they stop with it, instead of running in an application
    // that serves nothing (a port in use, say).
    await app.close().catch((closing: unknown) => new Logger('Example').error(`Closing after the failed listen() failed too: ${String(closing)}`));
    throw error;
  }
  new Logger('Payments').log(`Listening on http://127.0.0.1:${config.port} (GET /health, GET /metrics)`);
  return app;
}
