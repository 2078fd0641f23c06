import type { ClaimedOutboxRecord } from '../outbox/outbox-record';
import { RelayHandoff } from './relay-handoff';

const record = (id: string): ClaimedOutboxRecord => ({
  id,
  eventName: 'x',
  eventVersion: 1,
  payload: '{}',
  headers: {},
  occurredAt: new Date(),
  attempts: 0,
});

describe('RelayHandoff', () => {
  let handoff: RelayHandoff;
  let canPublish: boolean;
  let rings: number;
  let refused: string[];

  beforeEach(() => {
    handoff = new RelayHandoff();
    canPublish = true;
    rings = 0;
    refused = [];
  });

  const open = (capacity = 3) =>
    handoff.open({
      leaseMs: 30_000,
      capacity,
      canPublish: () => canPublish,
      onHandedOff: () => rings++,
      onRefused: (records) => refused.push(...records.map((r) => r.id)),
    });

  it('gives no lease before it is opened', () => {
    expect(handoff.leaseForInsert()).toBeUndefined();
  });

  it('leases under its own token while open, and not while the relay cannot publish', () => {
    open();
    expect(handoff.leaseForInsert()?.lease).toEqual({ token: handoff.token, leaseMs: 30_000 });
    canPublish = false;
    expect(handoff.leaseForInsert()).toBeUndefined();
  });

  it('stops leasing once capacity rows wait, and again when the relay takes them', () => {
    open(3);
    handoff.handOff([record('a'), record('b'), record('c')], 1);
    expect(handoff.leaseForInsert()).toBeUndefined();
    expect(handoff.take(2).map((h) => h.record.id)).toEqual(['a', 'b']);
    expect(handoff.leaseForInsert()).toBeDefined();
  });

  it('counts the rows a lease would bring: never past capacity with those waiting', () => {
    open(3);
    handoff.handOff([record('a')], 1);
    expect(handoff.leaseForInsert(3)).toBeUndefined();
    expect(handoff.leaseForInsert(2)).toBeDefined();
  });

  it('counts the rows leased to every transaction still open, until they are handed over or rolled back', () => {
    open(4);
    // Two transactions open at once, each with rows leased: together they fill the lane.
    const first = handoff.leaseForInsert(2)!;
    const second = handoff.leaseForInsert(2)!;
    expect(handoff.leaseForInsert(1)).toBeUndefined();
    // The first commits: its rows wait for the relay, and still count until it takes them.
    handoff.handOff([record('a'), record('b')], 1, first.reservation);
    expect(handoff.leaseForInsert(1)).toBeUndefined();
    handoff.take(2);
    // The second rolls back: its room comes back too.
    handoff.discard([second.reservation]);
    expect(handoff.leaseForInsert(4)).toBeDefined();
  });

  it('lets go of a reservation older than half the lease (a transaction that never ended)', () => {
    const now = jest.spyOn(performance, 'now').mockReturnValue(1_000);
    try {
      open(2);
      expect(handoff.leaseForInsert(2)).toBeDefined();
      expect(handoff.leaseForInsert(1)).toBeUndefined();
      now.mockReturnValue(1_000 + 14_999);
      expect(handoff.leaseForInsert(1)).toBeUndefined();
      now.mockReturnValue(1_000 + 15_001);
      expect(handoff.leaseForInsert(2)).toBeDefined();
    } finally {
      now.mockRestore();
    }
  });

  it('hands rows over in order with when they were leased, and rings the relay', () => {
    open();
    handoff.handOff([record('a')], 10);
    handoff.handOff([record('b'), record('c')], 20);
    expect(rings).toBe(2);
    expect(handoff.take(10)).toEqual([
      { record: record('a'), leasedAt: 10 },
      { record: record('b'), leasedAt: 20 },
      { record: record('c'), leasedAt: 20 },
    ].map((h) => ({ ...h, record: { ...h.record, occurredAt: expect.any(Date) } })));
    expect(handoff.size).toBe(0);
  });

  it('gives back what waits when closed, and refuses rows handed over after that', () => {
    open();
    handoff.handOff([record('a')], 1);
    expect(handoff.close().map((h) => h.record.id)).toEqual(['a']);
    expect(handoff.leaseForInsert()).toBeUndefined();
    handoff.handOff([record('late')], 2);
    expect(refused).toEqual(['late']);
    expect(handoff.size).toBe(0);
  });

  it('has a token of its own: a restarted process never shares one', () => {
    expect(new RelayHandoff().token).not.toBe(handoff.token);
  });
});
