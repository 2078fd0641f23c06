import { Column, Entity, PrimaryColumn } from 'typeorm';

export type OrderStatus = 'created' | 'paid';

@Entity({ schema: 'ordering', name: 'orders' })
/** How an order is stored (the Order aggregate is the domain model). */
export class OrderEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('text', { name: 'customer_id' })
  customerId!: string;

  @Column('integer', { name: 'amount_cents' })
  amountCents!: number;

  @Column('varchar', { length: 16 })
  status!: OrderStatus;

  @Column('timestamptz', { name: 'created_at' })
  createdAt!: Date;

  @Column('timestamptz', { name: 'paid_at', nullable: true })
  paidAt!: Date | null;
}
