import * as net from 'node:net';
import { Client } from 'pg';

/**
 * A loopback proxy in front of the real PostgreSQL that, once armed, has the server terminate the next
 * new connection (`pg_terminate_backend`) the moment its startup completes, and hands the client the
 * connection's ReadyForQuery and the server's FATAL in **one read**, as a network may coalesce them when
 * a restart or failover terminates a backend that just became ready. The proxy only holds the server's
 * bytes back until the FATAL has come; it changes none. Other connections pass through untouched.
 */
export class FatalAtReadyProxy {
  private armed = false;
  private readonly sockets = new Set<net.Socket>();
  /** Connections terminated at ready so far. */
  terminated = 0;

  private constructor(
    private readonly server: net.Server,
    private readonly target: { host: string; port: number },
    private readonly databaseUrl: string,
  ) {}

  /** A proxy to `target`, accepting; `databaseUrl` is a direct connection for `pg_terminate_backend`. */
  static async start(target: { host: string; port: number }, databaseUrl: string): Promise<FatalAtReadyProxy> {
    let proxy: FatalAtReadyProxy | undefined;
    const server = net.createServer((client) => proxy!.pipe(client));
    proxy = new FatalAtReadyProxy(server, target, databaseUrl);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** The next connection opened is terminated as soon as it is ready. */
  arm(): void {
    this.armed = true;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private pipe(client: net.Socket): void {
    const upstream = net.connect(this.target.port, this.target.host);
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => {
        this.sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (data) => upstream.write(data));
    if (!this.armed) {
      upstream.on('data', (data) => client.write(data));
      return;
    }
    this.armed = false;
    let held = Buffer.alloc(0);
    let phase: 'startup' | 'terminating' | 'done' = 'startup';
    let pid: number | undefined;
    upstream.on('data', (data) => {
      if (phase === 'done') return;
      held = Buffer.concat([held, data]);
      for (const message of messagesIn(held)) {
        if (phase === 'startup' && message.type === 'K') pid = message.body.readInt32BE(0);
        if (phase === 'startup' && message.type === 'Z') {
          phase = 'terminating';
          void this.terminate(pid!);
        } else if (phase === 'terminating' && message.type === 'E') {
          phase = 'done';
          this.terminated += 1;
          client.end(held);
        }
      }
    });
  }

  private async terminate(pid: number): Promise<void> {
    const db = new Client({ connectionString: this.databaseUrl });
    db.on('error', () => undefined);
    await db.connect();
    try {
      await db.query('SELECT pg_terminate_backend($1)', [pid]);
    } finally {
      await db.end();
    }
  }
}

/** The complete backend messages in `buffer` (type byte, then a length that counts itself). */
function* messagesIn(buffer: Buffer): Generator<{ type: string; body: Buffer }> {
  let offset = 0;
  while (offset + 5 <= buffer.length) {
    const length = buffer.readInt32BE(offset + 1);
    if (offset + 1 + length > buffer.length) return;
    yield { type: String.fromCharCode(buffer[offset]!), body: buffer.subarray(offset + 5, offset + 1 + length) };
    offset += 1 + length;
  }
}
