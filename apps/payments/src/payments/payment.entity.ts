import { Column, Entity, PrimaryColumn } from 'typeorm';

@Entity({ schema: 'payments', name: 'payments' })
export class Payment {
  @PrimaryColumn('uuid')
  id!: string;

  /** One payment per order: the unique key makes recording it idempotent. */
  @Column('uuid', { name: 'order_id', unique: true })
  orderId!: string;

  @Column('integer', { name: 'amount_cents' })
  amountCents!: number;

  @Column('timestamptz', { name: 'paid_at' })
  paidAt!: Date;
}
