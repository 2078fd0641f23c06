import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/**
 * Audit log, used by the fault-injection suite (chaos/) to prove the inbox works: one row per committed
 * execution of RecordPaymentHandler, before its idempotency check. No unique key on purpose.
 */
@Entity({ schema: 'payments', name: 'payment_attempts_log' })
export class PaymentAttemptLogEntry {
  @PrimaryGeneratedColumn()
  seq!: number;

  @Column('varchar', { name: 'order_id' })
  orderId!: string;

  @Column('integer', { name: 'handled_by' })
  handledBy!: number;
}
