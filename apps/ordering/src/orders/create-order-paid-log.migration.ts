import type { MigrationInterface, QueryRunner } from 'typeorm';
import { onSqlite } from '../../../shared/dialect';

/** The audit log of OrderPaidHandler (see OrderPaidLogEntry). */
export class CreateOrderPaidLog1764144000004 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    if (onSqlite(queryRunner)) {
      await queryRunner.query(
        'CREATE TABLE order_paid_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL, handled_by INTEGER NOT NULL)',
      );
      return;
    }
    await queryRunner.query(`
      CREATE TABLE ordering.order_paid_log (
        seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        order_id    uuid        NOT NULL,
        handled_by  integer     NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(onSqlite(queryRunner) ? 'DROP TABLE order_paid_log' : 'DROP TABLE ordering.order_paid_log');
  }
}
