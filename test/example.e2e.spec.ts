import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { ChildService, freePort } from './support/child-service';
import { consistently, eventually } from './support/eventually';
import { createIsolatedEnvironment, type IsolatedEnvironment } from './support/isolated-environment';

/**
 * The example, run as `npm start` runs it (two processes from the built code), against a private
 * database and vhost: orders placed over HTTP reach `paid` through RabbitMQ.
 */
describe('example: ordering and payments', () => {
  let env: IsolatedEnvironment;
  let example: ChildService;
  let ordering: string;

  beforeAll(async () => {
    env = await createIsolatedEnvironment();
    const [orderingPort, paymentsPort] = [await freePort(), await freePort()];
    ordering = `http://127.0.0.1:${orderingPort}`;
    example = ChildService.start('scripts/start-example.js', {
      DATABASE_URL: env.databaseUrl,
      RABBITMQ_URL: env.rabbitmqUrl,
      ORDERING_PORT: String(orderingPort),
      PAYMENTS_PORT: String(paymentsPort),
    });
    try {
      await eventually(
        async () => {
          const response = await fetch(`${ordering}/orders/${randomUUID()}`);
          expect(response.status).toBe(404);
          expect(example.output.join('\n')).toMatch(/\[payments\].*Service "payments" started/);
        },
        { timeoutMs: 30_000, intervalMs: 200 },
      );
    } catch (error) {
      (error as Error).message += `\n--- example output ---\n${example.output.join('\n')}`;
      throw error;
    }
  }, 60_000);

  afterAll(async () => {
    const code = await example?.stop();
    await env?.cleanup();
    expect(code).toBe(0);
  });

  it('walks orders from created to paid', async () => {
    const created = await Promise.all(
      Array.from({ length: 5 }, async (_, i) => {
        const response = await fetch(`${ordering}/orders`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ customerId: `customer-${i}`, amountCents: 1_000 + i }),
        });
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

  it('leaves neither the order nor any message behind when a domain-event handler refuses it', async () => {
    const db = new Client({ connectionString: env.databaseUrl });
    await db.connect();
    try {
      const count = async (sql: string) => Number((await db.query(sql)).rows[0].count);
      const paymentsBefore = await count('SELECT count(*) FROM payments.payments');
      const response = await fetch(`${ordering}/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ customerId: 'big-spender', amountCents: 5_000_000 }),
      });
      expect(response.status).toBe(422);
      expect(((await response.json()) as { message: string }).message).toMatch(/exceeds the credit limit/);
      expect(await count(`SELECT count(*) FROM ordering.orders WHERE customer_id = 'big-spender'`)).toBe(0);
      expect(await count(`SELECT count(*) FROM ordering.integration_events_outbox WHERE payload LIKE '%big-spender%'`)).toBe(0);
      // Nothing reached payments either.
      await consistently(async () => expect(await count('SELECT count(*) FROM payments.payments')).toBe(paymentsBefore), {
        forMs: 500,
      });
    } finally {
      await db.end();
    }
  });

  it('refuses an invalid order with 400', async () => {
    const response = await fetch(`${ordering}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ customerId: 'c', amountCents: -5 }),
    });
    expect(response.status).toBe(400);
  });
});
