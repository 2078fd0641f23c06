import 'reflect-metadata';
import { Logger, ValidationPipe } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { exampleConfig } from '../../shared/example-config';
import { OrderingModule } from './ordering.module';

async function bootstrap(): Promise<void> {
  const config = exampleConfig(3001);
  const app = await NestFactory.create(OrderingModule.register(config));
  app.useGlobalPipes(new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true }));
  app.enableShutdownHooks();
  await app.listen(config.port, '127.0.0.1');
  new Logger('Ordering').log(`Listening on http://127.0.0.1:${config.port} (POST /orders, GET /orders/:id)`);
}

bootstrap().catch((error: unknown) => {
  new Logger('Ordering').error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
