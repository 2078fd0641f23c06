import { WakeSignal } from './wake-signal';

/** Resolves to whether `promise` has settled by now (after pending microtasks ran). */
async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(() => {
    settled = true;
  });
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return settled;
}

describe('WakeSignal', () => {
  let signal: WakeSignal;

  beforeEach(() => {
    jest.useFakeTimers();
    signal = new WakeSignal();
  });

  afterEach(() => {
    jest.useRealTimers();
  });

  describe('a ring before wait', () => {
    it('makes the next wait return at once, without a timer', async () => {
      signal.notify();
      const waiting = signal.wait(60_000);
      expect(jest.getTimerCount()).toBe(0);
      expect(await isSettled(waiting)).toBe(true);
    });

    it('is used up by that wait: the one after waits again', async () => {
      signal.notify();
      await signal.wait(60_000);
      const second = signal.wait(1_000);
      expect(await isSettled(second)).toBe(false);
      jest.advanceTimersByTime(1_000);
      expect(await isSettled(second)).toBe(true);
    });
  });

  describe('many rings', () => {
    it('collapse into one', async () => {
      signal.notify();
      signal.notify();
      signal.notify();
      expect(await isSettled(signal.wait(1_000))).toBe(true);
      const next = signal.wait(1_000);
      expect(await isSettled(next)).toBe(false);
      jest.advanceTimersByTime(1_000);
      expect(await isSettled(next)).toBe(true);
    });

    it('right after one that woke a pending wait count for the next wait, as the relay may already be busy', async () => {
      const first = signal.wait(60_000);
      signal.notify();
      signal.notify();
      signal.notify();
      expect(await isSettled(first)).toBe(true);
      expect(await isSettled(signal.wait(60_000))).toBe(true);
      const third = signal.wait(1_000);
      expect(await isSettled(third)).toBe(false);
      jest.advanceTimersByTime(1_000);
      expect(await isSettled(third)).toBe(true);
    });
  });

  describe('a ring during wait', () => {
    it('resolves the wait before its timeout and clears its timer', async () => {
      const waiting = signal.wait(60_000);
      expect(jest.getTimerCount()).toBe(1);
      expect(await isSettled(waiting)).toBe(false);
      signal.notify();
      expect(await isSettled(waiting)).toBe(true);
      expect(jest.getTimerCount()).toBe(0);
    });

    it('is not lost when it comes after a wait timed out', async () => {
      const timedOut = signal.wait(100);
      jest.advanceTimersByTime(100);
      await timedOut;
      signal.notify();
      expect(await isSettled(signal.wait(60_000))).toBe(true);
    });
  });

  describe('timeout', () => {
    it('resolves the wait after timeoutMs with no ring, not before', async () => {
      const waiting = signal.wait(500);
      jest.advanceTimersByTime(499);
      expect(await isSettled(waiting)).toBe(false);
      jest.advanceTimersByTime(1);
      expect(await isSettled(waiting)).toBe(true);
      expect(jest.getTimerCount()).toBe(0);
    });

    it('leaves the signal unrung', async () => {
      const waiting = signal.wait(10);
      jest.advanceTimersByTime(10);
      await waiting;
      const next = signal.wait(10);
      expect(await isSettled(next)).toBe(false);
      jest.advanceTimersByTime(10);
      await next;
    });

    it('works with real timers too', async () => {
      jest.useRealTimers();
      const started = Date.now();
      await signal.wait(20);
      expect(Date.now() - started).toBeGreaterThanOrEqual(15);
    });
  });

  describe('claim requests', () => {
    it('come with notify, not with ring, and are used up once taken', async () => {
      signal.ring();
      expect(signal.takeClaimRequest()).toBe(false);
      expect(await isSettled(signal.wait(1_000))).toBe(true);
      signal.notify();
      expect(signal.takeClaimRequest()).toBe(true);
      expect(signal.takeClaimRequest()).toBe(false);
    });

    it('outlive the wait they ended: taking the request is separate from waking', async () => {
      signal.notify();
      await signal.wait(1_000);
      expect(signal.takeClaimRequest()).toBe(true);
    });
  });

  it('notify never throws when nobody waits', () => {
    expect(() => {
      for (let i = 0; i < 100; i++) signal.notify();
    }).not.toThrow();
  });
});
