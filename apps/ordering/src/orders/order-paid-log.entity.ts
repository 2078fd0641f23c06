import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/**
 * Audit log, used by the fault-injection suite (chaos/) to prove the inbox works: one row per committed
 * execution of OrderPaidHandler. Deliberately no unique key: two rows for one order would be a side
 * effect run twice.
 */
@Entity({ schema: 'ordering', name: 'order_paid_log' })
export class OrderPaidLogEntry {
  @PrimaryGeneratedColumn()
  seq!: number;

  @Column('varchar', { name: 'order_id' })
  orderId!: string;

  @Column('integer', { name: 'handled_by' })
  handledBy!: number;
}
