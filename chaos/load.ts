/** Outcome counts of the orders the load generator tried to place. */
export interface LoadStats {
  readonly attempted: number;
  readonly created: number;
  readonly failed: number;
  readonly failures: Readonly<Record<string, number>>;
  /** Orders not even sent: the service was so slow that `maxInFlight` requests were still waiting. */
  readonly notSent: number;
  /** Latency of acknowledged requests, ms. */
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/**
 * POST /orders at a steady rate, spread round-robin over the ordering instances. Keeps the id of every
 * order the service acknowledged (HTTP 201): each of them must be committed. A failed request says
 * nothing either way (the service may have died after the commit), which is why the checker counts
 * from the database.
 */
export class LoadGenerator {
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private scheduled = 0;
  private sent = 0;
  private notSent = 0;
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly failures: Record<string, number> = {};
  readonly acknowledgedIds: string[] = [];
  private readonly latenciesMs: number[] = [];

  constructor(
    private readonly targets: () => readonly string[],
    private readonly ratePerSecond: number,
    private readonly tag: string,
    private readonly maxInFlight = 400,
  ) {}

  start(): void {
    this.startedAt = Date.now();
    this.timer = setInterval(() => {
      const due = Math.floor(((Date.now() - this.startedAt) * this.ratePerSecond) / 1000) - this.scheduled;
      for (let i = 0; i < due; i++) {
        this.scheduled += 1;
        // Back-pressure: a stalled service must not pile up thousands of sockets in the suite.
        if (this.inFlight.size >= this.maxInFlight) this.notSent += 1;
        else void this.place();
      }
    }, 10);
  }

  /** Stops placing orders and waits for the requests in flight. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.allSettled([...this.inFlight]);
  }

  /**
   * Places `count` orders at once, on top of the steady load, and resolves as soon as the first of them
   * is acknowledged: at that moment several transactions with outbox rows have just committed, and
   * their relay is publishing them (or about to).
   */
  burst(count: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let pending = count;
      for (let i = 0; i < count; i++) {
        void this.place().then((ok) => {
          pending -= 1;
          if (ok) resolve();
          else if (pending === 0) reject(new Error(`none of a burst of ${count} orders was acknowledged`));
        });
      }
    });
  }

  get stats(): LoadStats {
    const sorted = [...this.latenciesMs].sort((a, b) => a - b);
    const percentile = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
    return {
      attempted: this.sent,
      created: this.acknowledgedIds.length,
      failed: Object.values(this.failures).reduce((sum, n) => sum + n, 0),
      failures: { ...this.failures },
      notSent: this.notSent,
      p50Ms: percentile(0.5),
      p99Ms: percentile(0.99),
    };
  }

  private place(): Promise<boolean> {
    const n = ++this.sent;
    const targets = this.targets();
    const target = targets[n % targets.length]!;
    // With several instances, failures say which one.
    const where = targets.length > 1 ? ` (${target})` : '';
    const request = (async () => {
      const sentAt = Date.now();
      try {
        const response = await fetch(`${target}/orders`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ customerId: `${this.tag}-${n}`, amountCents: 100 + (n % 9_000) }),
          signal: AbortSignal.timeout(15_000),
        });
        const body = (await response.json().catch(() => undefined)) as { id?: unknown } | undefined;
        if (response.status === 201 && typeof body?.id === 'string') {
          this.acknowledgedIds.push(body.id);
          this.latenciesMs.push(Date.now() - sentAt);
          return true;
        }
        this.count(`HTTP ${response.status}${where}`);
      } catch (error) {
        this.count(`${classify(error)}${where}`);
      }
      return false;
    })();
    this.inFlight.add(request);
    void request.finally(() => this.inFlight.delete(request));
    return request;
  }

  private count(kind: string): void {
    this.failures[kind] = (this.failures[kind] ?? 0) + 1;
  }
}

function classify(error: unknown): string {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) return 'timeout';
  const cause = error instanceof Error ? (error.cause as { code?: unknown } | undefined) : undefined;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return 'connection reset';
  return code ?? (error instanceof Error ? error.message : String(error));
}
