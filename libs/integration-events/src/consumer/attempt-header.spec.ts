import { readAttempt } from './attempt-header';

describe('readAttempt', () => {
  it('is 1 on a first delivery (no header)', () => {
    expect(readAttempt({}, 10)).toBe(1);
  });

  it('reads the attempt set by the library, as a number or a numeric string', () => {
    expect(readAttempt({ 'ie-attempt': 4 }, 10)).toBe(4);
    expect(readAttempt({ 'ie-attempt': '7' }, 10)).toBe(7);
  });

  it.each([
    [-5, 1],
    [0, 1],
    [2.5, 1],
    ['many', 1],
    [Number.NaN, 1],
    [null, 1],
    [{ $gt: 1 }, 1],
    ['1e3', 1],
    [1_000_000, 10],
    ['99999999999', 10],
  ])('clamps a forged or absurd value %j to %d', (value, expected) => {
    expect(readAttempt({ 'ie-attempt': value }, 10)).toBe(expected);
  });
});
