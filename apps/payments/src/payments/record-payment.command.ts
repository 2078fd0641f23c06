import { randomUUID } from 'node:crypto';
import { CommandHandler, EventPublisher, type ICommandHandler } from '@nestjs/cqrs';
import { InjectTransactionHost, Transactional, TransactionHost } from '@nestjs-cls/transactional';
import type { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { PaymentAggregate } from './payment.aggregate';
import { PaymentAttemptLogEntry } from './payment-attempt-log.entity';
import { Payment } from './payment.entity';

export class RecordPaymentCommand {
  constructor(
    readonly orderId: string,
    readonly amountCents: number,
  ) {}
}

/**
 * Records the order's payment, once per order. A redelivered OrderCreated is skipped by the inbox before
 * it gets here; an order's payment already recorded (say, by an operator's replay of another message)
 * is found and nothing is raised. The aggregate's PaymentRecordedDomainEvent is turned into
 * OrderPaidIntegrationEvent by a converter, in this transaction.
 */
@CommandHandler(RecordPaymentCommand)
export class RecordPaymentHandler implements ICommandHandler<RecordPaymentCommand> {
  constructor(
    @InjectTransactionHost('payments') private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    private readonly eventPublisher: EventPublisher,
  ) {}

  @Transactional('payments')
  async execute({ orderId, amountCents }: RecordPaymentCommand): Promise<void> {
    // Audit log, used by the fault-injection suite (chaos/) to prove the inbox works: one row per committed
    // execution, before the idempotency check below (which would otherwise hide a second execution).
    await this.txHost.tx.getRepository(PaymentAttemptLogEntry).insert({ orderId, handledBy: process.pid });
    const payments = this.txHost.tx.getRepository(Payment);
    if (await payments.existsBy({ orderId })) return; // Already paid.
    const payment = PaymentAggregate.record(randomUUID(), orderId, amountCents, new Date());
    await payments.insert({ id: payment.id, orderId, amountCents, paidAt: payment.paidAt });
    this.eventPublisher.mergeObjectContext(payment).commit();
  }
}
