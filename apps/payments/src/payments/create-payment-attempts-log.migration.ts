import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Audit log, used by the fault-injection suite (`npm run chaos`) to prove the inbox works: one row per
 * committed execution of RecordPaymentHandler, written in its transaction. Deliberately no unique key
 * (unlike payments.order_id): two rows for one order would be a side effect run twice.
 */
export class CreatePaymentAttemptsLog1764144000003 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(`
      CREATE TABLE payments.payment_attempts_log (
        seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        order_id    uuid        NOT NULL,
        handled_by  integer     NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query('DROP TABLE payments.payment_attempts_log');
  }
}
