import type { Logger } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import type { DiscoveredHandler } from '../discovery/discovered-handler';
import { warnIfInboxCanFillThePool } from './pool-size-check';

describe('warnIfInboxCanFillThePool', () => {
  const warnings = (max: unknown, concurrency: number): string[] => {
    const dataSource = { options: { type: 'postgres' }, driver: { master: { options: { max } } } } as unknown as DataSource;
    const handlers = [{ inbox: true, concurrency }, { inbox: false, concurrency: 50 }] as unknown as DiscoveredHandler[];
    const warned: string[] = [];
    warnIfInboxCanFillThePool(dataSource, handlers, { warn: (message: string) => warned.push(message) } as unknown as Logger);
    return warned;
  };

  it('reads a pool size given as a string (an environment variable) as pg-pool does', () => {
    expect(warnings('50', 10)).toEqual([]);
    expect(warnings('5', 8)).toEqual([expect.stringContaining('may hold 8 database connections at once (their concurrency), and the pool has 5')]);
  });

  it('takes node-postgres\' default of 10 when the size is missing or not a positive number', () => {
    for (const max of [undefined, null, 0, 'many', Number.NaN]) {
      expect(warnings(max, 10)).toEqual([expect.stringContaining('and the pool has 10')]);
      expect(warnings(max, 9)).toEqual([]);
    }
  });
});
