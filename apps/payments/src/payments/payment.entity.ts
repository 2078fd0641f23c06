import { Column, Entity, PrimaryColumn } from 'typeorm';

/** A recorded payment. The schema applies on PostgreSQL only. */
@Entity({ schema: 'payments', name: 'payments' })
export class Payment {
  @PrimaryColumn('varchar')
  id!: string;

  /** One payment per order: the unique key makes recording it idempotent. */
  @Column('varchar', { name: 'order_id', unique: true })
  orderId!: string;

  @Column('integer', { name: 'amount_cents' })
  amountCents!: number;

  @Column({ name: 'paid_at' })
  paidAt!: Date;
}
