import { SingleFlight } from './single-flight';

describe('SingleFlight', () => {
  it('shares a call under way, and starts a new one once it has settled', async () => {
    const flight = new SingleFlight<number>();
    let calls = 0;
    let finish!: (value: number) => void;
    const start = () => {
      calls++;
      return new Promise<number>((resolve) => (finish = resolve));
    };
    const [a, b] = [flight.run(start), flight.run(start)];
    expect(calls).toBe(1);
    finish(7);
    expect(await Promise.all([a, b])).toEqual([7, 7]);
    void flight.run(start);
    expect(calls).toBe(2);
  });

  it('starts a new call when the one under way is older than maxAgeMs (stuck), and clears after a rejection', async () => {
    const flight = new SingleFlight<number>(0);
    let calls = 0;
    const stuck = () => {
      calls++;
      return new Promise<number>(() => undefined);
    };
    void flight.run(stuck);
    await new Promise((resolve) => setTimeout(resolve, 5));
    void flight.run(stuck);
    expect(calls).toBe(2);
    const failing = new SingleFlight<number>();
    await expect(failing.run(() => Promise.reject(new Error('down')))).rejects.toThrow('down');
    await expect(failing.run(() => Promise.resolve(1))).resolves.toBe(1);
  });
});
