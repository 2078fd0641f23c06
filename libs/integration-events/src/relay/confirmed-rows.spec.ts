import { ConfirmedRows } from './confirmed-rows';

describe('ConfirmedRows', () => {
  it('holds ids by lease token, in the order they came, and gives them all up at once', () => {
    const rows = new ConfirmedRows();
    rows.add(['a', 'b'], 'token-1');
    rows.add(['c'], 'token-2');
    rows.add(['d'], 'token-1');
    expect(rows.size).toBe(4);
    expect(rows.takeAll()).toEqual([
      ['token-1', ['a', 'b', 'd']],
      ['token-2', ['c']],
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
    const [[token, ids]] = rows.takeAll() as [[string, string[]]];
    expect(rows.putBack(ids, token, 1_000, 10_000)).toEqual([]);
    expect(rows.size).toBe(2);
    expect(rows.retrying).toBe(2);
    // Failed again 999 ms after the first failure: held; at 1,000 ms: given up, and no longer counted.
    const again = rows.takeAll()[0]![1];
    expect(rows.putBack(again, token, 1_000, 10_999)).toEqual([]);
    expect(rows.putBack(rows.takeAll()[0]![1], token, 1_000, 11_000)).toEqual(['a', 'b']);
    expect(rows.size).toBe(0);
    expect(rows.retrying).toBe(0);
  });

  it('counts a row put back and then marked as retried no longer, and holds it with the rows that came meanwhile', () => {
    const rows = new ConfirmedRows();
    rows.putBack(['a'], 'token-1', 1_000, 10_000);
    rows.add(['b'], 'token-1');
    rows.add(['c'], 'token-2');
    expect(rows.takeAll()).toEqual([
      ['token-1', ['a', 'b']],
      ['token-2', ['c']],
    ]);
    rows.marked(['a', 'b']);
    expect(rows.retrying).toBe(0);
    // Put back after a later failure, it starts a new give-up time.
    expect(rows.putBack(['a'], 'token-1', 1_000, 50_000)).toEqual([]);
    expect(rows.retrying).toBe(1);
  });
});
