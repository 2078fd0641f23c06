import type { MigrationInterface, QueryRunner } from 'typeorm';
import { onSqlite } from '../../../shared/dialect';

export class CreateOrdersTable1764144000001 implements MigrationInterface {
  async up(queryRunner: QueryRunner): Promise<void> {
    if (onSqlite(queryRunner)) {
      await queryRunner.query(`
        CREATE TABLE orders (
          id           TEXT PRIMARY KEY,
          customer_id  TEXT    NOT NULL,
          amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
          status       TEXT    NOT NULL,
          created_at   DATETIME NOT NULL,
          paid_at      DATETIME NULL
        )`);
      return;
    }
    await queryRunner.query('CREATE SCHEMA IF NOT EXISTS ordering');
    await queryRunner.query(`
      CREATE TABLE ordering.orders (
        id           uuid PRIMARY KEY,
        customer_id  text        NOT NULL,
        amount_cents integer     NOT NULL CHECK (amount_cents > 0),
        status       varchar(16) NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        paid_at      timestamptz NULL
      )`);
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.query(onSqlite(queryRunner) ? 'DROP TABLE orders' : 'DROP TABLE ordering.orders');
  }
}
