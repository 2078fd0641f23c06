import { createHash } from 'node:crypto';

/** A plain, unquoted SQL identifier. Anything else is refused before it can reach SQL text. */
export const SQL_IDENTIFIER_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * The outbox table's name, validated and quoted once. Identifiers cannot be bound as query
 * parameters, so this is the only way a name from options enters SQL: checked against
 * `SQL_IDENTIFIER_PATTERN`, then double-quoted.
 */
export class OutboxTableName {
  /** `"schema"."table"` or `"table"`, ready to splice into SQL. */
  readonly qualified: string;

  constructor(
    readonly schema: string | undefined,
    readonly table: string,
  ) {
    for (const identifier of schema === undefined ? [table] : [schema, table]) {
      if (!SQL_IDENTIFIER_PATTERN.test(identifier)) {
        throw new Error(`"${identifier}" is not a plain SQL identifier`);
      }
    }
    this.qualified = schema === undefined ? quote(table) : `${quote(schema)}.${quote(table)}`;
  }

  /**
   * A quoted name for an object (index, constraint) derived from the table name. PostgreSQL cuts
   * names at 63 bytes, which would make the names of a long table's objects collide with each other
   * (or with the table): a long one keeps a prefix plus a hash of the whole name.
   */
  derived(suffix: string): string {
    const full = `${this.table}_${suffix}`;
    if (full.length <= 63) return quote(full);
    const hash = createHash('sha256').update(full).digest('hex').slice(0, 8);
    return quote(`${this.table.slice(0, 63 - suffix.length - hash.length - 2)}_${hash}_${suffix}`);
  }
}

function quote(identifier: string): string {
  return `"${identifier}"`;
}
