import { OutboxTableName, SQL_IDENTIFIER_PATTERN } from './outbox-table-name';

describe('OutboxTableName', () => {
  describe('qualified name', () => {
    it('quotes the table alone when there is no schema', () => {
      expect(new OutboxTableName(undefined, 'integration_events_outbox').qualified).toBe('"integration_events_outbox"');
    });

    it('quotes schema and table separately', () => {
      expect(new OutboxTableName('messaging', 'outbox').qualified).toBe('"messaging"."outbox"');
    });

    it('keeps upper-case letters as given (quoted, so Postgres keeps them too)', () => {
      const name = new OutboxTableName('Messaging', 'Outbox_2');
      expect(name.qualified).toBe('"Messaging"."Outbox_2"');
      expect(name.schema).toBe('Messaging');
      expect(name.table).toBe('Outbox_2');
    });
  });

  describe('refuses anything but a plain SQL identifier', () => {
    it.each([
      'x; DROP TABLE y',
      'x"; DROP TABLE y; --',
      'public.outbox',
      '"outbox"',
      '1outbox',
      'outbox-events',
      'outbox events',
      'outbox\n',
      'tablé',
      '',
      'a'.repeat(64),
    ])('%j as the table or the schema', (identifier) => {
      const message = `"${identifier}" is not a plain SQL identifier`;
      expect(() => new OutboxTableName(undefined, identifier)).toThrow(message);
      expect(() => new OutboxTableName(identifier, 'outbox')).toThrow(message);
      expect(() => new OutboxTableName('public', identifier)).toThrow(message);
    });

    it.each(['_', '_outbox', 'o', 'Outbox_2', 'a'.repeat(63)])('but accepts %j', (identifier) => {
      expect(new OutboxTableName(identifier, identifier).qualified).toBe(`"${identifier}"."${identifier}"`);
    });

    it('exports the same pattern resolveOptions checks against', () => {
      expect(SQL_IDENTIFIER_PATTERN.test('integration_events_outbox')).toBe(true);
      expect(SQL_IDENTIFIER_PATTERN.test('x; DROP TABLE y')).toBe(false);
    });
  });

  describe('derived names', () => {
    it('appends the suffix to the table name and quotes the result', () => {
      const name = new OutboxTableName('messaging', 'outbox');
      expect(name.derived('pending_idx')).toBe('"outbox_pending_idx"');
      expect(name.derived('status_check')).toBe('"outbox_status_check"');
    });

    it('never includes the schema', () => {
      expect(new OutboxTableName('messaging', 'outbox').derived('pkey')).not.toContain('messaging');
    });

    it('keeps a long name within 63 characters, the longest identifier PostgreSQL keeps, suffix intact', () => {
      const derived = new OutboxTableName(undefined, 'a'.repeat(60)).derived('pending_idx');
      expect(derived).toMatch(/^"a+_[0-9a-f]{8}_pending_idx"$/);
      expect(derived.length - 2).toBeLessThanOrEqual(63);
    });

    it('stays distinct from the table and between the migration suffixes at the longest allowed table name', () => {
      const table = 't'.repeat(63);
      const name = new OutboxTableName(undefined, table);
      const derived = ['status_check', 'pending_idx', 'sent_at_idx'].map((suffix) => name.derived(suffix));
      expect(derived).not.toContain(name.qualified);
      expect(new Set(derived).size).toBe(derived.length);
    });
  });
});
