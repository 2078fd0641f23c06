import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { exampleConfig } from '../../shared/example-config';
import { PaymentsModule } from './payments.module';

async function bootstrap(): Promise<void> {
  const config = exampleConfig(3002);
  const app = await NestFactory.create(PaymentsModule.register(config));
  app.enableShutdownHooks();
  await app.listen(config.port, '127.0.0.1');
  new Logger('Payments').log(`Listening on http://127.0.0.1:${config.port}`);
}

bootstrap().catch((error: unknown) => {
  new Logger('Payments').error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
