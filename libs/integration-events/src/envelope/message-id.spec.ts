import { newMessageId } from './message-id';

const VERSION_7_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The Unix time in ms in the first 48 bits of a UUID. */
const timeOf = (id: string): number => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);

describe('newMessageId', () => {
  it('makes a version 7 UUID with the RFC 9562 variant', () => {
    for (let i = 0; i < 1_000; i++) {
      expect(newMessageId()).toMatch(VERSION_7_UUID);
    }
  });

  it('carries the time it was made, to the millisecond', () => {
    const before = Date.now();
    const id = newMessageId();
    const after = Date.now();
    expect(timeOf(id)).toBeGreaterThanOrEqual(before);
    expect(timeOf(id)).toBeLessThanOrEqual(after);
    expect(timeOf(newMessageId(Date.UTC(2026, 10, 26, 6, 30, 0, 123)))).toBe(Date.UTC(2026, 10, 26, 6, 30, 0, 123));
    expect(newMessageId(0).startsWith('00000000-0000-7')).toBe(true);
    expect(newMessageId(0xffffffffffff).startsWith('ffffffff-ffff-7')).toBe(true);
  });

  it('sorts ids of a later millisecond after those of an earlier one, as text (and so as PostgreSQL uuids, compared byte by byte)', () => {
    const earlier = Array.from({ length: 200 }, () => newMessageId(1_764_144_000_000));
    const later = Array.from({ length: 200 }, () => newMessageId(1_764_144_000_001));
    const sorted = [...later, ...earlier].sort();
    expect(sorted.slice(0, 200).every((id) => earlier.includes(id))).toBe(true);
    expect(sorted.slice(200).every((id) => later.includes(id))).toBe(true);
  });

  it('keeps ids of one millisecond apart by their 74 random bits', () => {
    const ids = new Set(Array.from({ length: 10_000 }, () => newMessageId(1_764_144_000_000)));
    expect(ids.size).toBe(10_000);
  });
});
