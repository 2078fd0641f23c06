import { ConfirmedRows } from './confirmed-rows';

describe('ConfirmedRows', () => {
  it('holds ids by lease token, in the order they came, and gives them all up at once', () => {
    const rows = new ConfirmedRows();
    rows.add(['a', 'b'], 'token-1');
    rows.add(['c'], 'token-2');
    rows.add(['d'], 'token-1');
    expect(rows.size).toBe(4);
    expect(rows.takeAll()).toEqual([
      { leaseToken: 'token-1', ids: ['a', 'b', 'd'], retry: false },
      { leaseToken: 'token-2', ids: ['c'], retry: false },
    ]);
    expect(rows.size).toBe(0);
    expect(rows.takeAll()).toEqual([]);
  });

  it('ages from the oldest row it holds, and from the next one once emptied', () => {
    let clock = 1_000;
    jest.spyOn(performance, 'now').mockImplementation(() => clock);
    try {
      const rows = new ConfirmedRows();
      expect(rows.age()).toBe(0);
      rows.add(['a'], 'token');
      clock = 1_030;
      rows.add(['b'], 'token');
      clock = 1_050;
      expect(rows.age()).toBe(50);
      rows.takeAll();
      expect(rows.age()).toBe(0);
      rows.add(['c'], 'token');
      expect(rows.age(1_060)).toBe(10);
    } finally {
      jest.restoreAllMocks();
    }
  });

  it('ignores an empty set of ids: nothing to mark, nothing starts to age', () => {
    const rows = new ConfirmedRows();
    rows.add([], 'token');
    expect(rows.size).toBe(0);
    expect(rows.age(performance.now() + 1_000)).toBe(0);
    expect(rows.takeAll()).toEqual([]);
  });

  it('holds rows whose mark failed again, until their first failure is the give-up time old', () => {
    const rows = new ConfirmedRows();
    rows.add(['a', 'b'], 'token');
    const [first] = rows.takeAll();
    expect(rows.putBack(first!.ids, first!.leaseToken, 1_000, 10_000)).toEqual([]);
    expect(rows.size).toBe(2);
    expect(rows.retrying).toBe(2);
    // Failed again 999 ms after the first failure: held; at 1,000 ms: given up, and no longer counted.
    expect(rows.putBack(rows.takeAll()[0]!.ids, 'token', 1_000, 10_999)).toEqual([]);
    expect(rows.putBack(rows.takeAll()[0]!.ids, 'token', 1_000, 11_000)).toEqual(['a', 'b']);
    expect(rows.size).toBe(0);
    expect(rows.retrying).toBe(0);
  });

  it('keeps rows put back apart from those confirmed since, under the same token, and forgets them once marked', () => {
    const rows = new ConfirmedRows();
    rows.putBack(['a'], 'token-1', 1_000, 10_000);
    rows.add(['b'], 'token-1');
    rows.add(['c'], 'token-2');
    expect(rows.size).toBe(3);
    // A row that keeps failing cannot take the rows confirmed since down with it: they go by a statement of their own.
    expect(rows.takeAll()).toEqual([
      { leaseToken: 'token-1', ids: ['b'], retry: false },
      { leaseToken: 'token-2', ids: ['c'], retry: false },
      { leaseToken: 'token-1', ids: ['a'], retry: true },
    ]);
    expect(rows.retrying).toBe(1);
    rows.marked(['a'], 'token-2');
    expect(rows.retrying).toBe(1);
    rows.marked(['a'], 'token-1');
    expect(rows.retrying).toBe(0);
    // Put back after a later failure, it starts a new give-up time.
    expect(rows.putBack(['a'], 'token-1', 1_000, 50_000)).toEqual([]);
    expect(rows.retrying).toBe(1);
  });

  it('times a row claimed again, under another token, from its own first failure', () => {
    const rows = new ConfirmedRows();
    rows.putBack(['a'], 'token-1', 1_000, 10_000);
    rows.takeAll();
    expect(rows.putBack(['a'], 'token-2', 1_000, 10_500)).toEqual([]);
    expect(rows.putBack(['a'], 'token-1', 1_000, 11_000)).toEqual(['a']);
    expect(rows.putBack(['a'], 'token-2', 1_000, 11_400)).toEqual([]);
  });

  it('ages from a row put back as from any other', () => {
    const rows = new ConfirmedRows();
    rows.putBack(['a'], 'token', 1_000);
    expect(rows.age(performance.now() + 60)).toBeGreaterThanOrEqual(60);
  });
});
