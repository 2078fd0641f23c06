import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Audit log, used by the fault-injection suite (`npm run chaos`) to prove the inbox works: one row per
 * committed execution of OrderPaidHandler, written in its transaction. Deliberately no unique key: two
 * rows for one order would be a side effect run twice.
 */
export class CreateOrderPaidLog1764144000004 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE ordering.order_paid_log (
        seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        order_id    uuid        NOT NULL,
        handled_by  integer     NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query('DROP TABLE ordering.order_paid_log');
  }
}
