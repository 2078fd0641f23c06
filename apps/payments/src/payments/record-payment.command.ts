import { randomUUID } from 'node:crypto';
import { CommandHandler, EventPublisher, type ICommandHandler } from '@nestjs/cqrs';
import { Transactional, TransactionHost } from '@nestjs-cls/transactional';
import type { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { PaymentAggregate } from './payment.aggregate';
import { Payment } from './payment.entity';

export class RecordPaymentCommand {
  constructor(
    readonly orderId: string,
    readonly amountCents: number,
  ) {}
}

/**
 * Records the order's payment, once: the unique order id makes a redelivered OrderCreated find the
 * payment already there and raise nothing. The aggregate's PaymentRecordedDomainEvent is turned into
 * OrderPaidIntegrationEvent by a converter, in this transaction.
 */
@CommandHandler(RecordPaymentCommand)
export class RecordPaymentHandler implements ICommandHandler<RecordPaymentCommand> {
  constructor(
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    private readonly eventPublisher: EventPublisher,
  ) {}

  @Transactional()
  async execute({ orderId, amountCents }: RecordPaymentCommand): Promise<void> {
    // Audit log, used by the fault-injection suite (chaos/) to prove the inbox works: one row per committed
    // execution, before the idempotency check below (which would otherwise hide a second execution).
    await this.txHost.tx.query('INSERT INTO payments.payment_attempts_log (order_id, handled_by) VALUES ($1, $2)', [orderId, process.pid]);
    const payment = PaymentAggregate.record(randomUUID(), orderId, amountCents, new Date());
    const inserted = await this.txHost.tx
      .createQueryBuilder()
      .insert()
      .into(Payment)
      .values({ id: payment.id, orderId, amountCents, paidAt: payment.paidAt })
      .orIgnore()
      .returning(['id'])
      .execute();
    if (inserted.raw.length === 0) return; // Already paid: this delivery is a duplicate.
    this.eventPublisher.mergeObjectContext(payment).commit();
  }
}
