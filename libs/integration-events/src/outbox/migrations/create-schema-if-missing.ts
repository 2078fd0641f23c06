import type { QueryRunner } from 'typeorm';

/**
 * Creates a PostgreSQL schema unless it exists. `CREATE SCHEMA IF NOT EXISTS` alone is not enough: it
 * checks the CREATE privilege on the database before it looks for the schema, so an application role
 * that may write into a schema a DBA made, but not create schemas, would fail its migration.
 */
export async function createSchemaIfMissing(queryRunner: QueryRunner, schema: string): Promise<void> {
  const found = (await queryRunner.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])) as unknown[];
  // Still IF NOT EXISTS: another instance's migration may create it in between.
  if (found.length === 0) await queryRunner.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
}
