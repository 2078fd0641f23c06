import { RequeueInterruptedError } from '../../errors/requeue-interrupted.error';
import { InProcessBroker } from './in-process-broker';
import { InProcessDeadLetters } from './in-process-dead-letters';

describe('InProcessDeadLetters', () => {
  const deadLetter = (messageId: string) => ({
    content: Buffer.from('{}'),
    messageId,
    routingKey: 'svc.h.dlq',
    headers: { 'ie-queue': 'svc.h', 'ie-dead-letter-reason': 'max-attempts' },
    properties: {},
    redelivered: false,
  });

  it('requeues into the handler\'s queue, without the failure headers, taking the dead letter out', async () => {
    const broker = new InProcessBroker();
    broker.queue('svc.h');
    broker.sendToQueue('svc.h.dlq', deadLetter('m1'));
    await expect(new InProcessDeadLetters(broker).requeue('svc.h.dlq', { all: true })).resolves.toEqual({ requeued: ['m1'], missing: [], withoutConsumers: ['svc.h'] });
    expect(broker.findQueue('svc.h.dlq')!.peek()).toEqual([]);
    expect(broker.findQueue('svc.h')!.peek()).toEqual([expect.objectContaining({ messageId: 'm1', headers: {} })]);
    broker.close();
  });

  it('keeps a dead letter whose copy the broker refuses (closed), as RabbitMQ keeps one whose copy is not confirmed', async () => {
    const broker = new InProcessBroker();
    broker.queue('svc.h');
    broker.sendToQueue('svc.h.dlq', deadLetter('m1'));
    broker.close();
    const attempt = new InProcessDeadLetters(broker).requeue('svc.h.dlq', { all: true });
    await expect(attempt).rejects.toBeInstanceOf(RequeueInterruptedError);
    await expect(attempt).rejects.toThrow('The in-process broker is closed');
    expect(broker.findQueue('svc.h.dlq')!.peek().map((m) => m.messageId)).toEqual(['m1']);
  });
});
