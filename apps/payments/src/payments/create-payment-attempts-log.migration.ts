import type { MigrationInterface, QueryRunner } from 'typeorm';
import { onSqlite } from '../../../shared/dialect';

/** The audit log of RecordPaymentHandler (see PaymentAttemptLogEntry). */
export class CreatePaymentAttemptsLog1764144000003 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    if (onSqlite(queryRunner)) {
      await queryRunner.query(
        'CREATE TABLE payment_attempts_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL, handled_by INTEGER NOT NULL)',
      );
      return;
    }
    await queryRunner.query(`
      CREATE TABLE payments.payment_attempts_log (
        seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        order_id    uuid        NOT NULL,
        handled_by  integer     NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(onSqlite(queryRunner) ? 'DROP TABLE payment_attempts_log' : 'DROP TABLE payments.payment_attempts_log');
  }
}
