import { Logger, ValidationPipe, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { ServiceConfig } from '../../shared/example-config';
import { OrderingModule } from './ordering.module';

/** Creates and starts the ordering service's HTTP application. */
export async function startOrdering(config: ServiceConfig, { ownsProcess = true } = {}): Promise<INestApplication> {
  const app = await NestFactory.create(OrderingModule.register(config));
  app.useGlobalPipes(new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true }));
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
  new Logger('Ordering').log(`Listening on http://127.0.0.1:${config.port} (POST /orders, GET /orders/:id, GET /health, GET /metrics)`);
  return app;
}
