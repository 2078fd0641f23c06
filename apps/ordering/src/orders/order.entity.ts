import { Column, Entity, PrimaryColumn } from 'typeorm';

export type OrderStatus = 'created' | 'paid';

/** How an order is stored (the Order aggregate is the domain model). The schema applies on PostgreSQL only. */
@Entity({ schema: 'ordering', name: 'orders' })
export class OrderEntity {
  @PrimaryColumn('varchar')
  id!: string;

  @Column('varchar', { name: 'customer_id' })
  customerId!: string;

  @Column('integer', { name: 'amount_cents' })
  amountCents!: number;

  @Column('varchar', { length: 16 })
  status!: OrderStatus;

  @Column({ name: 'created_at' })
  createdAt!: Date;

  @Column({ name: 'paid_at', type: Date, nullable: true })
  paidAt!: Date | null;
}
