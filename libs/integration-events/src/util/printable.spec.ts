import { printable } from './printable';

describe('printable', () => {
  it('writes control characters as escapes, so a value cannot add log lines or drive a terminal', () => {
    expect(printable('id\n[Nest] 1 - LOG forged')).toBe('id\\u000a[Nest] 1 - LOG forged');
    expect(printable('\u001b[2J\u009b31m\u007f\r\t')).toBe('\\u001b[2J\\u009b31m\\u007f\\u000d\\u0009');
    expect(printable('plain-id, émigré, 日本')).toBe('plain-id, émigré, 日本');
  });

  it('cuts long values', () => {
    expect(printable('x'.repeat(1_500))).toBe(`${'x'.repeat(1_000)}…`);
    expect(printable('abcdef', 3)).toBe('abc…');
  });
});
