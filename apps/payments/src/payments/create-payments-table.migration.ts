import type { MigrationInterface, QueryRunner } from 'typeorm';
import { onSqlite } from '../../../shared/dialect';

export class CreatePaymentsTable1764144000002 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    if (onSqlite(queryRunner)) {
      await queryRunner.query(
        'CREATE TABLE payments (id TEXT PRIMARY KEY, order_id TEXT NOT NULL UNIQUE, amount_cents INTEGER NOT NULL, paid_at DATETIME NOT NULL)',
      );
      return;
    }
    await queryRunner.query('CREATE SCHEMA IF NOT EXISTS payments');
    await queryRunner.query(`
      CREATE TABLE payments.payments (
        id           uuid PRIMARY KEY,
        order_id     uuid        NOT NULL UNIQUE,
        amount_cents integer     NOT NULL,
        paid_at      timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(onSqlite(queryRunner) ? 'DROP TABLE payments' : 'DROP TABLE payments.payments');
  }
}
