import * as net from 'node:net';

/**
 * A loopback TCP proxy in front of a real service, for tests that need the network to fail without
 * touching the shared service: refuse connections (the service is "down"), cut the open ones (a crash
 * or restart), or freeze them (a half-dead path: sockets stay open, nothing gets through).
 */
export class TcpProxy {
  private server: net.Server | undefined;
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket; frozen: boolean; muted: boolean }>();
  /** What the client sent on connections opened while held, kept until `release()`; undefined when not holding. */
  private held: Array<{ upstream: net.Socket; data: Buffer }> | undefined;
  /** The proxy's port; fixed at construction so a service can be given it before it accepts. */
  readonly port: number;

  private constructor(
    port: number,
    private readonly target: { host: string; port: number },
  ) {
    this.port = port;
  }

  /** A proxy to `target` on a free port, not yet accepting connections. */
  static async create(target: { host: string; port: number }): Promise<TcpProxy> {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    return new TcpProxy(port, target);
  }

  /** Starts accepting connections (and forwarding them). */
  async accept(): Promise<void> {
    if (this.server) return;
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      const pair = { client, upstream, frozen: false, muted: false };
      this.pairs.add(pair);
      const holding = this.held !== undefined;
      client.on('data', (data) => {
        if (pair.frozen || pair.muted) return;
        if (holding && this.held) this.held.push({ upstream, data });
        else upstream.write(data);
      });
      upstream.on('data', (data) => pair.frozen || client.write(data));
      const end = (): void => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      for (const socket of [client, upstream]) {
        socket.on('close', end);
        socket.on('error', () => undefined);
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', resolve);
    });
    this.server = server;
  }

  /**
   * Connections opened from now on reach the service only at `release()`: what their clients send is
   * kept until then (a connection attempt under way, its handshake not answered yet).
   */
  hold(): void {
    this.held ??= [];
  }

  /** Sends on what held connections kept, in order, and forwards them from then on. */
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const { upstream, data } of held) upstream.write(data);
  }

  /** Stops accepting new connections (open ones are left alone). */
  async refuse(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    // close() stops the listener at once; its callback would wait for the open connections to end.
    server?.close();
  }

  /**
   * Drops open connections at once, as a crash or a restart would: all of them, or only the `nth`
   * (0-based, in the order they were opened).
   */
  cut(nth?: number): void {
    [...this.pairs].forEach((pair, index) => {
      if (nth !== undefined && index !== nth) return;
      pair.client.destroy();
      pair.upstream.destroy();
    });
  }

  /**
   * Open connections go silent both ways while their sockets stay open: all of them, or only the
   * `nth` (0-based, in the order they were opened).
   */
  freeze(nth?: number): void {
    [...this.pairs].forEach((pair, index) => {
      if (nth === undefined || index === nth) pair.frozen = true;
    });
  }

  /**
   * What the client sends on the `nth` open connection (0-based, in the order they were opened) no
   * longer reaches the service, while the service's frames still reach the client: a request the
   * client makes is never answered.
   */
  mute(nth: number): void {
    [...this.pairs].forEach((pair, index) => {
      if (index === nth) pair.muted = true;
    });
  }

  /** Number of open connections through the proxy. */
  get connections(): number {
    return this.pairs.size;
  }

  async stop(): Promise<void> {
    this.cut();
    await this.refuse();
  }
}
