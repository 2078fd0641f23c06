import { exceedsJsonDepth } from './json-depth';

/** A string-like whose reads are counted, to see how far the scan goes. */
function countingText(text: string): { text: string; reads: () => number } {
  let reads = 0;
  const fake = {
    length: text.length,
    charCodeAt(index: number): number {
      reads++;
      return text.charCodeAt(index);
    },
  };
  return { text: fake as unknown as string, reads: () => reads };
}

describe('exceedsJsonDepth', () => {
  describe('counts nested objects and arrays', () => {
    it.each([
      ['"text"', 0],
      ['42', 0],
      ['{}', 1],
      ['[]', 1],
      ['{"a":1,"b":[1,2],"c":{}}', 2],
      ['[[],[],[]]', 2],
      ['{"a":{"b":[{"c":[]}]}}', 5],
      [' { "a" : [ { } ] } ', 3],
    ])('%s is %d deep', (text, depth) => {
      expect(exceedsJsonDepth(text, depth)).toBe(false);
      if (depth > 0) expect(exceedsJsonDepth(text, depth - 1)).toBe(true);
    });

    it('counts the deepest branch, not the total of brackets', () => {
      const wide = JSON.stringify(Array.from({ length: 1_000 }, () => ({ a: [1] })));
      expect(exceedsJsonDepth(wide, 3)).toBe(false);
      expect(exceedsJsonDepth(wide, 2)).toBe(true);
    });
  });

  describe('brackets inside strings do not count', () => {
    it('ignores brackets in values and keys', () => {
      const text = JSON.stringify({ '[[[{{{': ']]]}}}', note: '{[{[{[{[' });
      expect(exceedsJsonDepth(text, 1)).toBe(false);
    });

    it('ignores brackets after an escaped quote', () => {
      const text = JSON.stringify({ a: 'say \\"[[[[ and "{{{{" then ]]]]' });
      expect(text).toContain('\\"');
      expect(exceedsJsonDepth(text, 1)).toBe(false);
    });

    it('ends the string after an escaped backslash, so later brackets count', () => {
      // The value is a single backslash ("\\" in JSON): the quote after it closes the string.
      const text = '{"a":"\\\\","b":[[[]]]}';
      expect(JSON.parse(text)).toStrictEqual({ a: '\\', b: [[[]]] });
      expect(exceedsJsonDepth(text, 4)).toBe(false);
      expect(exceedsJsonDepth(text, 3)).toBe(true);
    });

    it('ignores unicode-escaped brackets and quotes', () => {
      const text = '{"a":"\\u005b\\u007b\\u0022[[["}';
      expect(exceedsJsonDepth(text, 1)).toBe(false);
    });
  });

  describe('hostile bodies', () => {
    it('detects 20,000 nested arrays, and tells them apart from a limit that allows them', () => {
      const text = '['.repeat(20_000) + ']'.repeat(20_000);
      expect(exceedsJsonDepth(text, 64)).toBe(true);
      expect(exceedsJsonDepth(text, 20_000)).toBe(false);
      expect(exceedsJsonDepth(text, 19_999)).toBe(true);
    });

    it('detects 20,000 nested objects', () => {
      const text = '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000);
      expect(exceedsJsonDepth(text, 64)).toBe(true);
    });

    it('stops reading as soon as the limit is exceeded', () => {
      const counting = countingText('['.repeat(20_000) + ']'.repeat(20_000));
      expect(exceedsJsonDepth(counting.text, 64)).toBe(true);
      expect(counting.reads()).toBe(65);
    });

    it('reads a text within the limit once, character by character', () => {
      const text = '{"a":[1,{"b":"]]]"}]}';
      const counting = countingText(text);
      expect(exceedsJsonDepth(counting.text, 3)).toBe(false);
      expect(counting.reads()).toBe(text.length);
    });
  });
});
