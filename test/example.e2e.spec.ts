import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { ChildService, freePort } from './support/child-service';
import { consistently, eventually } from './support/eventually';
import { createIsolatedEnvironment, type IsolatedEnvironment } from './support/isolated-environment';

interface Mode {
  /** Environment for `npm start`'s script; a database URL to check the refusal against, if any. */
  setUp(): Promise<{ env: NodeJS.ProcessEnv; databaseUrl?: string; cleanup(): Promise<void> }>;
}

const modes: Array<[string, Mode]> = [
  [
    'embedded (no DATABASE_URL, no RABBITMQ_URL): one process, SQLite, in-process broker',
    {
      setUp: async () => ({ env: { DATABASE_URL: '', RABBITMQ_URL: '' }, cleanup: async () => undefined }),
    },
  ],
  [
    'services (DATABASE_URL and RABBITMQ_URL): a process per service, PostgreSQL, RabbitMQ',
    {
      setUp: async () => {
        const isolated: IsolatedEnvironment = await createIsolatedEnvironment();
        return {
          env: { DATABASE_URL: isolated.databaseUrl, RABBITMQ_URL: isolated.rabbitmqUrl },
          databaseUrl: isolated.databaseUrl,
          cleanup: () => isolated.cleanup(),
        };
      },
    },
  ],
];

/**
 * The example, run as `npm start` runs it (scripts/start-example.js on the built code), in both of its
 * modes: orders placed over HTTP reach `paid`, a refused order leaves nothing behind.
 */
describe.each(modes)('example: ordering and payments, %s', (_name, mode) => {
  let example: ChildService;
  let ordering: string;
  let payments: string;
  let setUp: Awaited<ReturnType<Mode['setUp']>>;

  beforeAll(async () => {
    setUp = await mode.setUp();
    const [orderingPort, paymentsPort] = [await freePort(), await freePort()];
    ordering = `http://127.0.0.1:${orderingPort}`;
    payments = `http://127.0.0.1:${paymentsPort}`;
    example = ChildService.start('scripts/start-example.js', {
      ...setUp.env,
      ORDERING_PORT: String(orderingPort),
      PAYMENTS_PORT: String(paymentsPort),
    });
    try {
      await eventually(
        async () => {
          expect((await fetch(`${ordering}/orders/${randomUUID()}`)).status).toBe(404);
          expect((await fetch(`${payments}/health`)).status).toBe(200);
        },
        { timeoutMs: 45_000, intervalMs: 200 },
      );
    } catch (error) {
      (error as Error).message += `\n--- example output ---\n${example.output.join('\n')}`;
      throw error;
    }
  }, 90_000);

  afterAll(async () => {
    const code = await example?.stop();
    await setUp?.cleanup();
    expect(code).toBe(0);
  });

  const placeOrder = (customerId: string, amountCents: number) =>
    fetch(`${ordering}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ customerId, amountCents }),
    });

  it('says which mode it runs in, first thing', () => {
    const first = example.output.find((line) => /mode/.test(line));
    expect(first).toMatch(setUp.databaseUrl ? /services mode/ : /Embedded mode: both services in one process/);
  });

  it('walks orders from created to paid', async () => {
    const created = await Promise.all(
      Array.from({ length: 5 }, async (_, i) => {
        const response = await placeOrder(`customer-${i}`, 1_000 + i);
        expect(response.status).toBe(201);
        const order = (await response.json()) as { id: string; status: string };
        expect(order.status).toBe('created');
        return order.id;
      }),
    );
    for (const id of created) {
      await eventually(async () => {
        const order = (await (await fetch(`${ordering}/orders/${id}`)).json()) as { status: string; paidAt: string | null };
        expect(order.status).toBe('paid');
        expect(order.paidAt).not.toBeNull();
      });
    }
  });

  it('keeps every good order placed while refused ones roll back and payments come in, all at once', async () => {
    // In embedded mode the requests share SQLite's one connection with the inbox transactions: they take turns.
    const results = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const refused = i % 3 === 0;
        const response = await placeOrder(`racer-${i}`, refused ? 5_000_000 : 2_000 + i);
        expect(response.status).toBe(refused ? 422 : 201);
        return refused ? undefined : ((await response.json()) as { id: string }).id;
      }),
    );
    for (const id of results.filter((value): value is string => value !== undefined)) {
      await eventually(async () => expect(((await (await fetch(`${ordering}/orders/${id}`)).json()) as { status: string }).status).toBe('paid'));
    }
  });

  it('refuses an order a domain-event handler rejects, and nothing of it reaches payments', async () => {
    // Amounts no other test orders: a payment of one could only be this test's order's.
    const amountCents = 4_321_987;
    const goodAmountCents = 1_234;
    const handled = async () => {
      const metrics = await (await fetch(`${payments}/metrics`)).text();
      return metrics.split('\n').filter((line) => line.startsWith('integration_events_handled_total') && line.includes('ordering.order-created'));
    };
    // Taken before the order: embedded, a leaked event is relayed and handled within milliseconds, and
    // would be counted already in a baseline taken once the response is back.
    const before = await handled();
    const response = await placeOrder('big-spender', amountCents);
    expect(response.status).toBe(422);
    expect(((await response.json()) as { message: string }).message).toMatch(/exceeds the credit limit/);
    // What does arrive shows there: a good order placed after this one is counted (the probe is not blind).
    const proves = async () => {
      const good = await placeOrder('good-after-refusal', goodAmountCents);
      expect(good.status).toBe(201);
      await eventually(async () => expect(await handled()).not.toEqual(before));
    };
    if (!setUp.databaseUrl) {
      // Embedded, the databases are in the process's memory: payments' side shows in its metrics only.
      await consistently(async () => expect(await handled()).toEqual(before), { forMs: 500 });
      await proves();
      return;
    }
    const db = new Client({ connectionString: setUp.databaseUrl });
    await db.connect();
    try {
      const count = async (sql: string, parameters: unknown[] = []) => Number((await db.query(sql, parameters)).rows[0].count);
      // Payments never handles it, never takes a payment of its amount.
      await consistently(
        async () => {
          expect(await handled()).toEqual(before);
          expect(await count('SELECT count(*) FROM payments.payments WHERE amount_cents = $1', [amountCents])).toBe(0);
        },
        { forMs: 500 },
      );
      expect(await count(`SELECT count(*) FROM ordering.orders WHERE customer_id = 'big-spender'`)).toBe(0);
      expect(await count(`SELECT count(*) FROM ordering.integration_events_outbox WHERE payload LIKE '%big-spender%'`)).toBe(0);
      await proves();
      await eventually(async () => expect(await count('SELECT count(*) FROM payments.payments WHERE amount_cents = $1', [goodAmountCents])).toBe(1));
    } finally {
      await db.end();
    }
  });

  it('refuses an invalid order with 400', async () => {
    expect((await placeOrder('c', -5)).status).toBe(400);
    // Beyond the amount column's range: refused by validation, not a 500 from the INSERT (on PostgreSQL).
    expect((await placeOrder('c', 3_000_000_000)).status).toBe(400);
  });

  it('serves /health and Prometheus /metrics', async () => {
    // An order of its own, so that the published counter has its event whatever ran before.
    const { id } = (await (await placeOrder('metered', 1_500)).json()) as { id: string };
    await eventually(async () => expect(((await (await fetch(`${ordering}/orders/${id}`)).json()) as { status: string }).status).toBe('paid'));
    const health = (await (await fetch(`${ordering}/health`)).json()) as { status: string; info: { integrationEvents: { status: string } } };
    expect(health).toMatchObject({ status: 'ok', info: { integrationEvents: { status: 'up' } } });
    const metrics = await (await fetch(`${ordering}/metrics`)).text();
    expect(metrics).toMatch(/integration_events_published_total\{[^}]*integration_events_event_name="ordering.order-created"/);
    expect(metrics).toMatch(/integration_events_outbox_backlog\{/);
  });
});

describe('example: one of DATABASE_URL and RABBITMQ_URL without the other', () => {
  it('refuses to start, saying why', async () => {
    const example = ChildService.start('scripts/start-example.js', { DATABASE_URL: 'postgres://somewhere', RABBITMQ_URL: '' });
    expect(await example.waitForExit()).toBe(1);
    expect(example.output.join('\n')).toMatch(/Only DATABASE_URL is set\. Set both .* or neither/);
  });
});
