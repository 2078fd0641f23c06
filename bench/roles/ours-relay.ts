/**
 * Our relay alone, in a service process of its own (relay on, consumers off), library defaults
 * otherwise. The backlog is committed while it idles; `go` wakes it (as a commit in this process would).
 */
import type { Role } from '../child';
import { OutboxRelay } from 'nestjs-integration-events';
import { now } from '../lib/helpers';
import { createApp } from '../lib/nest';

interface Args {
  exchange: string;
  schema: string;
  serviceName: string;
  batchSize?: number;
  pollIntervalMs?: number;
}

export const run: Role = async (raw, io) => {
  const args = raw as unknown as Args;
  const app = await createApp({
    integrationEvents: {
      serviceName: args.serviceName,
      exchange: args.exchange,
      schema: args.schema,
      consumer: { enabled: false },
      relay: {
        ...(args.batchSize ? { batchSize: args.batchSize } : {}),
        ...(args.pollIntervalMs ? { pollIntervalMs: args.pollIntervalMs } : {}),
      },
    },
    providers: [],
  });
  io.send({ type: 'ready' });
  await io.next('go');
  const t0 = now();
  app.get(OutboxRelay).wake();
  await io.next('stop');
  await app.close();
  return { t0 };
};
