import type { LoadGenerator } from './load';
import type { PrivatePostgres } from './private-postgres';
import type { PrivateRabbitMq } from './private-rabbitmq';
import type { ServiceProcess } from './service-process';
import { errorMessage, log, pause, query, randomBetween, waitFor } from './util';

/** What a scenario's fault injection can reach. */
export interface ScenarioContext {
  readonly ordering: readonly ServiceProcess[];
  readonly payments: readonly ServiceProcess[];
  readonly load: LoadGenerator;
  readonly postgres: PrivatePostgres;
  readonly rabbitmq: PrivateRabbitMq;
  readonly databaseUrl: string;
  readonly vhost: string;
  /** Adds a line to the scenario's notes, printed under the table. */
  note(text: string): void;
}

export interface Scenario {
  readonly key: string;
  readonly title: string;
  readonly orderingInstances: number;
  readonly paymentsInstances: number;
  /** Load runs at least this long, and until `inject` is done. */
  readonly loadMs: number;
  /** Injects the faults, while the load runs. */
  inject(context: ScenarioContext): Promise<void>;
}

/** Rows of the ordering outbox committed but not marked sent; `leased` ones were claimed by a relay. */
async function outboxInFlight(databaseUrl: string): Promise<{ unsent: number; leased: number }> {
  const [row] = await query<{ unsent: number; leased: number }>(
    databaseUrl,
    `SELECT count(*) FILTER (WHERE status = 'pending')::int AS unsent,
            count(*) FILTER (WHERE status = 'pending' AND locked_until > now())::int AS leased
       FROM ordering.integration_events_outbox`,
  );
  return row!;
}

/**
 * Transactions a service has open right now, other than its relay's and cleanup's one-statement updates
 * and deletes: handler transactions (inbox record, business writes, outbox rows) and HTTP commands. The
 * services are told their name through PGAPPNAME, so their connections can be told apart.
 */
async function openTransactions(databaseUrl: string, service: ServiceProcess): Promise<number> {
  const [row] = await query<{ open: number }>(
    databaseUrl,
    `SELECT count(*)::int AS open FROM pg_stat_activity
      WHERE application_name = $1 AND xact_start IS NOT NULL
        AND query !~* '^\\s*(UPDATE|DELETE)[^;]*integration_events_(outbox|inbox)'`,
    [service.label],
  );
  return row!.open;
}

/** Polls (with a deadline) until `probe` sees something; returns what it saw last. */
async function poll(probe: () => Promise<number>, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let seen = 0;
  do {
    seen = await probe().catch(() => 0);
  } while (seen === 0 && Date.now() < deadline);
  return seen;
}

async function restart(service: ServiceProcess): Promise<void> {
  const started = Date.now();
  await service.start();
  log(`  ${service.label} restarted (pid ${service.pid}) in ${Date.now() - started} ms`);
}

/**
 * SIGKILLs ordering and reads its outbox at once: rows still `pending` were committed and not yet marked
 * sent; those `leased` were claimed by the dead relay, i.e. published (or being published) with no
 * recorded confirm. They must all arrive, after the lease runs out, through the restarted relay.
 */
async function killOrdering(context: ScenarioContext, why: string, evidence: string[]): Promise<void> {
  const [service] = context.ordering;
  const pid = await service!.kill('SIGKILL');
  const inFlight = await outboxInFlight(context.databaseUrl).catch(() => undefined);
  const seen = inFlight ? `${inFlight.unsent} unsent (${inFlight.leased} leased by a killed relay)` : 'outbox unreadable';
  evidence.push(inFlight ? `${inFlight.unsent}/${inFlight.leased}` : '?');
  log(`  SIGKILL ${service!.label} (pid ${pid}) ${why}; ordering outbox at the kill: ${seen}`);
  await restart(service!);
}

export const SCENARIOS: readonly Scenario[] = [
  {
    key: 'a',
    title: 'baseline, no faults',
    orderingInstances: 1,
    paymentsInstances: 1,
    loadMs: 10_000,
    async inject() {},
  },
  {
    key: 'b',
    title: 'SIGKILL ordering (producer + relay) x4: right after commits, at random, while its relay holds a lease',
    orderingInstances: 1,
    paymentsInstances: 1,
    loadMs: 25_000,
    async inject(context) {
      const evidence: string[] = [];
      for (let kill = 1; kill <= 4; kill++) {
        await pause(randomBetween(1_500, 3_500));
        if (kill === 1) {
          // Between commit and publish: the first acknowledged order of a burst means its transaction (and
          // others of the burst) just committed and woke the relay.
          await context.load.burst(40);
          await killOrdering(context, 'right after the first commit of a burst of 40 orders', evidence);
        } else if (kill === 3) {
          // Between publish and confirm/mark: a burst, then kill as soon as the relay holds a lease on rows
          // (claimed, being published, confirms not yet recorded).
          await context.load.burst(40);
          const leased = await poll(async () => (await outboxInFlight(context.databaseUrl)).leased, 2_000);
          await killOrdering(context, `after a burst, as its relay held a lease on ${leased} row(s)`, evidence);
        } else {
          await killOrdering(context, 'at a random moment', evidence);
        }
      }
      context.note(
        `4 SIGKILLs of ordering (right after commits, random, while its relay held a lease, random); ` +
          `ordering outbox rows unsent/leased at each kill: ${evidence.join(', ')}`,
      );
      await pause(3_000);
    },
  },
  {
    key: 'c',
    title: 'SIGKILL payments (consumer) x3 while handling, before its acks',
    orderingInstances: 1,
    paymentsInstances: 1,
    loadMs: 25_000,
    async inject(context) {
      const [payments] = context.payments;
      const openAtKill: number[] = [];
      for (let kill = 1; kill <= 3; kill++) {
        await pause(randomBetween(1_500, 3_500));
        if (kill === 1) await context.load.burst(150); // a backlog, so every prefetch slot is busy
        // Mid-processing: kill as soon as handler transactions are open (delivered, not committed, not acked).
        const open = await poll(() => openTransactions(context.databaseUrl, payments!), 3_000);
        const pid = await payments!.kill('SIGKILL');
        openAtKill.push(open);
        log(`  SIGKILL ${payments!.label} (pid ${pid}) with ${open} handler transaction(s) open`);
        await restart(payments!);
      }
      context.note(`3 SIGKILLs of payments, each while handling: handler transactions open at each kill: ${openAtKill.join(', ')}`);
      await pause(3_000);
    },
  },
  {
    key: 'd',
    title: 'RabbitMQ stop_app / start_app x2 under load (held stopped 4 s each)',
    orderingInstances: 1,
    paymentsInstances: 1,
    loadMs: 25_000,
    async inject(context) {
      const outages: string[] = [];
      const services = [...context.ordering, ...context.payments];
      for (let outage = 1; outage <= 2; outage++) {
        await pause(outage === 1 ? 4_000 : 3_000);
        const before = await outboxInFlight(context.databaseUrl).catch(() => undefined);
        const reconnectsBefore = services.map((service) => ({ ...service.brokerReconnects }));
        const down = Date.now();
        await context.rabbitmq.stopApp();
        log(`  rabbitmqctl stop_app (ordering outbox: ${before?.unsent ?? '?'} unsent)`);
        await pause(4_000); // the outage itself
        const backlog = await outboxInFlight(context.databaseUrl).catch(() => undefined);
        await context.rabbitmq.startApp();
        const up = Date.now();
        const seconds = ((up - down) / 1000).toFixed(1);
        log(`  rabbitmqctl start_app: broker down ${seconds} s; ordering outbox had ${backlog?.unsent ?? '?'} unsent rows just before`);
        // Wait for every service to be connected again (amqplib's backoff has grown during the outage), so the
        // next outage cuts live connections again rather than finding them still down.
        const back = await waitFor(
          'every service to reconnect to RabbitMQ',
          // Both connections of each (consuming and publishing: each logs its own "Reconnected"); the
          // example's services both have handlers, so both have a consuming connection.
          async () =>
            services.every(
              (service, i) =>
                service.brokerReconnects.consuming > reconnectsBefore[i]!.consuming &&
                service.brokerReconnects.publishing > reconnectsBefore[i]!.publishing,
            ) && Date.now(),
          { timeoutMs: 60_000 },
        ).catch((error: unknown) => {
          log(`!! ${errorMessage(error)}`);
          return undefined;
        });
        const reconnected = back === undefined ? 'not all services reconnected within 60 s' : `all services reconnected ${((back - up) / 1000).toFixed(1)} s after start_app`;
        log(`  ${reconnected}`);
        outages.push(`${seconds} s from stop_app to started, ${backlog?.unsent ?? '?'} ordering outbox rows waiting, ${reconnected}`);
      }
      context.note(`RabbitMQ application stopped twice: ${outages.join('; ')}`);
      await pause(3_000);
    },
  },
  {
    key: 'e',
    title: 'PostgreSQL restart (pg_ctl restart -m fast) x2 under load',
    orderingInstances: 1,
    paymentsInstances: 1,
    loadMs: 20_000,
    async inject(context) {
      const restarts: string[] = [];
      for (let n = 1; n <= 2; n++) {
        await pause(n === 1 ? 4_000 : 6_000);
        const started = Date.now();
        try {
          await context.postgres.restart();
          restarts.push(`${Date.now() - started} ms`);
          log(`  pg_ctl restart -m fast done in ${Date.now() - started} ms`);
        } catch (error) {
          restarts.push('failed');
          log(`!! pg_ctl restart failed: ${errorMessage(error)}`);
        }
      }
      context.note(`PostgreSQL restarted twice (fast shutdown: every connection terminated), each took ${restarts.join(', ')}`);
      await pause(3_000);
    },
  },
  {
    key: 'f',
    title: 'two ordering processes (two relays, one outbox) + two payments (competing consumers)',
    orderingInstances: 2,
    paymentsInstances: 2,
    loadMs: 20_000,
    async inject(context) {
      context.note('no faults: orders round-robin over both ordering processes; both relays claim from one outbox');
    },
  },
  {
    key: 'g',
    title: 'RabbitMQ memory alarm (8 s) under load, payments resumed into a backlog while it holds',
    orderingInstances: 1,
    paymentsInstances: 1,
    loadMs: 25_000,
    async inject(context) {
      const [payments] = context.payments;
      const pid = payments!.pid!;
      const queue = 'payments.order-created';
      const depth = async (): Promise<number> => {
        const found = (await context.rabbitmq.queues(context.vhost)).find((q) => q.name === queue);
        return found ? found.ready + found.unacked : NaN;
      };
      await pause(4_000);
      // Payments frozen for a moment: its queue fills, as it would behind a slow consumer.
      process.kill(pid, 'SIGSTOP');
      let frozen = true;
      let atResume = NaN;
      let atEnd = NaN;
      let states: Array<{ name: string; state: string }> = [];
      try {
        await pause(3_000);
        await context.rabbitmq.memoryAlarm(true);
        // In effect once ordering's relay, publishing, is blocked.
        // Within payments' heartbeat allowance (it is frozen meanwhile): about 20 s.
        await waitFor('the alarm to block a publishing connection', async () => (await context.rabbitmq.connections(context.vhost)).some((c) => c.state === 'blocked'), {
          timeoutMs: 8_000,
        });
        atResume = await depth();
        process.kill(pid, 'SIGCONT');
        frozen = false;
        log(`  memory alarm raised; payments resumed with ${atResume} messages in its queue`);
        // Payments handles the backlog: each handled message writes an OrderPaid outbox row, which its
        // relay tries to publish, which blocks its publishing connection. Its consuming one goes on.
        await pause(8_000);
        atEnd = await depth();
        states = await context.rabbitmq.connections(context.vhost);
      } finally {
        if (frozen) process.kill(pid, 'SIGCONT');
        await context.rabbitmq.memoryAlarm(false);
      }
      const described = states.map((c) => `${c.name}: ${c.state}`).join(', ');
      log(`  memory alarm cleared after 8 s: payments' queue went from ${atResume} to ${atEnd} messages; connections then: ${described}`);
      context.note(
        `memory alarm for 8 s: payments' queue went from ${atResume} to ${atEnd} messages while it held (connections at its end: ${described})`,
      );
      // A consumer whose connection the alarm blocked acks nothing more (a message or so at most).
      if (!(atResume > 0 && atEnd <= atResume / 2)) {
        throw new Error(`payments did not work through its queue during the memory alarm (${atResume} → ${atEnd} messages)`);
      }
      await pause(3_000);
    },
  },
];
