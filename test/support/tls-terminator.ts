import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tls from 'node:tls';
import { promisify } from 'node:util';

/**
 * A TLS endpoint in front of a plain TCP service, with a self-signed certificate made on the spot:
 * `amqps://` against the local RabbitMQ without configuring TLS in RabbitMQ itself.
 */
export class TlsTerminator {
  private constructor(
    private readonly server: tls.Server,
    readonly port: number,
    /** The certificate to trust (PEM). */
    readonly certificate: Buffer,
    private readonly directory: string,
  ) {}

  static async start(target: { host: string; port: number }): Promise<TlsTerminator> {
    const directory = await mkdtemp(path.join(tmpdir(), 'ie-tls-'));
    const key = path.join(directory, 'key.pem');
    const cert = path.join(directory, 'cert.pem');
    await promisify(execFile)('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost',
    ]);
    const certificate = await readFile(cert);
    const server = tls.createServer({ key: await readFile(key), cert: certificate }, (client) => {
      const upstream = net.connect(target.port, target.host);
      client.pipe(upstream).pipe(client);
      for (const socket of [client, upstream]) socket.on('error', () => socket.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new TlsTerminator(server, (server.address() as net.AddressInfo).port, certificate, directory);
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => this.server.close(resolve));
    await rm(this.directory, { recursive: true, force: true });
  }
}
