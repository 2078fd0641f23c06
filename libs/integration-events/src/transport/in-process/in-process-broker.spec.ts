import { InProcessBroker } from './in-process-broker';
import type { InProcessMessage } from './in-process-message';

const MESSAGE: InProcessMessage = {
  content: Buffer.from('{}'),
  messageId: 'm',
  routingKey: 'ordering.order-created',
  headers: {},
  properties: {},
  redelivered: false,
};

describe('InProcessBroker: what a queued message says of how it came', () => {
  it('names the exchange that routed it, and no exchange once a copy of it is sent straight to a queue', () => {
    const broker = new InProcessBroker();
    broker.bind('events', 'ordering.order-created', 'handler');
    expect(broker.publish('events', MESSAGE)).toBe(true);
    const [routed] = broker.queue('handler').peek();
    expect(routed?.exchange).toBe('events');
    // A retry or dead-letter copy is made from the delivered message, exchange and all.
    broker.sendToQueue('handler.dlq', { ...routed!, headers: { 'ie-dead-letter-reason': 'poison' } });
    const [copy] = broker.queue('handler.dlq').peek();
    expect(copy).not.toHaveProperty('exchange');
    expect(copy?.headers).toEqual({ 'ie-dead-letter-reason': 'poison' });
    broker.close();
  });

  it('gives every bound queue headers of its own, as RabbitMQ does: what one handler writes there no other sees', () => {
    const broker = new InProcessBroker();
    broker.bind('events', 'ordering.order-created', 'billing');
    broker.bind('events', 'ordering.order-created', 'shipping');
    const published = { ...MESSAGE, headers: { tenant: 'acme' } };
    broker.publish('events', published);
    const [billing] = broker.queue('billing').peek();
    const [shipping] = broker.queue('shipping').peek();
    (billing!.headers as Record<string, unknown>).tenant = 'changed by billing';
    expect(shipping!.headers).toEqual({ tenant: 'acme' });
    expect(published.headers).toEqual({ tenant: 'acme' });
    broker.close();
  });

  it('sends a delayed copy straight to its queue as well', async () => {
    const broker = new InProcessBroker();
    broker.bind('events', 'ordering.order-created', 'handler');
    broker.publish('events', MESSAGE);
    const [routed] = broker.queue('handler').peek();
    broker.sendToQueueLater('handler', routed!, 1);
    // Polled, with a deadline: the delay is a timer.
    const deadline = Date.now() + 5_000;
    while (broker.queue('handler').depth < 2 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
    const queued = broker.queue('handler').peek();
    expect(queued.map((message) => message.exchange)).toEqual(['events', undefined]);
    broker.close();
  });
});
