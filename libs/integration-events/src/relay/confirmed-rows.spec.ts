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
});
