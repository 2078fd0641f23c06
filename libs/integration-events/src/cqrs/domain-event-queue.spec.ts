import type { QueryRunner } from 'typeorm';
import { DomainEventQueue, type DomainEventRoute } from './domain-event-queue';

/** A query runner as the queue reads it: its data and its savepoint depth. */
function queryRunnerAt(depth: number): QueryRunner & { transactionDepth: number } {
  return { data: {}, transactionDepth: depth } as unknown as QueryRunner & { transactionDepth: number };
}

const route = {} as DomainEventRoute;

describe('DomainEventQueue', () => {
  it("keeps a late event raised in a savepoint once that savepoint is released, through a later sibling's rollback", () => {
    const queryRunner = queryRunnerAt(2);
    const queue = DomainEventQueue.of(queryRunner);
    // The transaction is committing: an event raised now, in a savepoint opened meanwhile, is late.
    queue.sealed = true;
    const audit = { name: 'AuditRecorded' };
    queue.add(audit, undefined, undefined, route);
    expect(queue.late.map((item) => item.event)).toEqual([audit]);
    // That savepoint is released: the event belongs to the transaction now.
    queryRunner.transactionDepth = 1;
    queue.released(1);
    // A second savepoint opens and rolls back: it takes nothing of the first one's.
    queryRunner.transactionDepth = 2;
    queue.add({ name: 'Discarded' }, undefined, undefined, route);
    queryRunner.transactionDepth = 1;
    queue.rolledBack(1);
    expect(queue.late.map((item) => item.event)).toEqual([audit]);
  });
});
