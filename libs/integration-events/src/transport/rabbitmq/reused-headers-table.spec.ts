import { ReusedHeadersTable } from './reused-headers-table';

describe('ReusedHeadersTable', () => {
  it('returns the same object, holding exactly the headers of the last fill', () => {
    const table = new ReusedHeadersTable();
    const first = table.fill({ 'ie-event-name': 'a', tenant: 'acme', priority: 3 });
    expect({ ...first }).toEqual({ 'ie-event-name': 'a', tenant: 'acme', priority: 3 });

    const second = table.fill({ 'ie-event-name': 'b', urgent: false });
    expect(second).toBe(first);
    expect({ ...second }).toEqual({ 'ie-event-name': 'b', urgent: false });
    expect(Object.keys(second).sort()).toEqual(['ie-event-name', 'urgent']);

    expect(Object.keys(table.fill({}))).toEqual([]);
  });

  it('keeps a header whose value is undefined as the caller passed it, and takes only own properties', () => {
    const table = new ReusedHeadersTable();
    table.fill({ kept: 'x' });
    const inherited = Object.create({ fromPrototype: 'no' }) as Record<string, unknown>;
    inherited['own'] = 'yes';
    inherited['kept'] = undefined;
    const filled = table.fill(inherited);
    expect(Object.keys(filled).sort()).toEqual(['kept', 'own']);
    expect(filled['kept']).toBeUndefined();
    expect(filled['fromPrototype']).toBeUndefined();
  });

  it('treats any name as a plain header, "__proto__" and "constructor" included', () => {
    const table = new ReusedHeadersTable();
    const headers = JSON.parse('{"__proto__": "p", "constructor": "c", "toString": "t"}') as Record<string, unknown>;
    const filled = table.fill(headers);
    expect(Object.keys(filled).sort()).toEqual(['__proto__', 'constructor', 'toString']);
    expect(Object.getPrototypeOf(filled)).toBeNull();
    expect(Object.keys(table.fill({ other: 1 }))).toEqual(['other']);
  });
});
