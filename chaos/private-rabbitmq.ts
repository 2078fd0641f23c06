import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort, log, pause, run, waitFor } from './util';

const SBIN = process.env.CHAOS_RABBITMQ_BIN ?? '/usr/lib/rabbitmq/bin';

export interface QueueDepth {
  readonly name: string;
  readonly ready: number;
  readonly unacked: number;
}

/**
 * A RabbitMQ node of the suite's own (`chaos-<id>@localhost`), on free ports of loopback, with its own
 * Erlang cookie, Mnesia directory, logs, config and (empty) plugin list, all under `root/rabbitmq`.
 * `stop_app` on it never touches the shared node on 5672. The Debian wrappers in /usr/sbin switch to the
 * `rabbitmq` user and its home (and so to the shared node's cookie); the scripts under
 * /usr/lib/rabbitmq/bin are run directly instead, as root with a private HOME.
 */
export class PrivateRabbitMq {
  private server: ChildProcess | undefined;

  private constructor(
    private readonly dir: string,
    readonly nodeName: string,
    readonly port: number,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /** Starts the node with `vhosts` already there (guest may use them), so no rabbitmqctl call is needed per vhost. */
  static async start(root: string, vhosts: readonly string[]): Promise<PrivateRabbitMq> {
    const dir = path.join(root, 'rabbitmq');
    const home = path.join(dir, 'home');
    for (const sub of ['mnesia', 'log', 'home']) mkdirSync(path.join(dir, sub), { recursive: true });
    writeFileSync(path.join(home, '.erlang.cookie'), randomBytes(20).toString('hex'), { mode: 0o400 });
    writeFileSync(path.join(dir, 'enabled_plugins'), '[].\n');
    writeFileSync(path.join(dir, 'rabbitmq-env.conf'), '');
    const [port, distPort, ctlPort] = [await freePort(), await freePort(), await freePort()];
    // Definitions imported at boot: the vhosts, and guest (a node that imports definitions at boot does
    // not create its default user).
    const definitions = {
      users: [{ name: 'guest', password_hash: hashPassword('guest'), hashing_algorithm: 'rabbit_password_hashing_sha256', tags: ['administrator'] }],
      vhosts: vhosts.map((name) => ({ name })),
      permissions: vhosts.map((vhost) => ({ user: 'guest', vhost, configure: '.*', write: '.*', read: '.*' })),
    };
    writeFileSync(path.join(dir, 'definitions.json'), JSON.stringify(definitions));
    // The shared /etc/rabbitmq/rabbitmq.conf pins 5672: this file replaces it.
    writeFileSync(
      path.join(dir, 'rabbitmq.conf'),
      [
        `listeners.tcp.default = 127.0.0.1:${port}`,
        'loopback_users = none',
        'definitions.import_backend = local_filesystem',
        `definitions.local.path = ${path.join(dir, 'definitions.json')}`,
        '',
      ].join('\n'),
    );
    const nodeName = `chaos-${randomBytes(3).toString('hex')}@localhost`;
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      LANG: 'C.UTF-8',
      HOME: home,
      RABBITMQ_CONF_ENV_FILE: path.join(dir, 'rabbitmq-env.conf'),
      RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq.conf'),
      RABBITMQ_ADVANCED_CONFIG_FILE: path.join(dir, 'advanced.config'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
      RABBITMQ_NODENAME: nodeName,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_CTL_DIST_PORT_MIN: String(ctlPort),
      RABBITMQ_CTL_DIST_PORT_MAX: String(ctlPort + 10),
      RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(dir, 'log'),
      RABBITMQ_PID_FILE: path.join(dir, 'rabbitmq.pid'),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
      ERL_EPMD_ADDRESS: '127.0.0.1',
    };
    const node = new PrivateRabbitMq(dir, nodeName, port, env);
    const out = openSync(path.join(dir, 'server.out'), 'a');
    node.server = spawn(path.join(SBIN, 'rabbitmq-server'), [], { env, cwd: dir, stdio: ['ignore', out, out] });
    closeSync(out);
    const exited = new Promise<never>((_resolve, reject) =>
      node.server!.once('exit', (code, signal) => reject(new Error(`rabbitmq-server exited during startup (${signal ?? code}); see ${dir}/server.out`))),
    );
    exited.catch(() => undefined);
    try {
      await Promise.race([exited, node.awaitStartup(90_000)]);
    } catch (error) {
      await node.stop();
      throw error;
    }
    log(`private RabbitMQ node ${nodeName} on 127.0.0.1:${port} (state in ${dir})`);
    return node;
  }

  url(vhost: string): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}/${encodeURIComponent(vhost)}`;
  }

  ctl(args: readonly string[], timeoutMs = 60_000): Promise<string> {
    return run(path.join(SBIN, 'rabbitmqctl'), ['-n', this.nodeName, '-q', ...args], { env: this.env, cwd: this.dir, timeoutMs });
  }

  async stopApp(): Promise<void> {
    await this.ctl(['stop_app']);
  }

  /** Returns once the application has started again (start_app is synchronous). */
  async startApp(): Promise<void> {
    await this.ctl(['start_app']);
  }

  /**
   * Raises a memory alarm on the node (its high watermark set to 1 MB, far below what it uses), or
   * clears it (back to RabbitMQ's default 0.4 of the machine's memory). During the alarm RabbitMQ blocks
   * every connection that publishes.
   */
  async memoryAlarm(on: boolean): Promise<void> {
    await this.ctl(on ? ['set_vm_memory_high_watermark', 'absolute', '1000000'] : ['set_vm_memory_high_watermark', '0.4']);
  }

  /** Each client connection's name (`connection_name`) and state: running, blocking, blocked, ... */
  async connections(vhost: string): Promise<Array<{ name: string; state: string }>> {
    const out = await this.ctl(['list_connections', '--no-table-headers', 'vhost', 'state', 'client_properties']);
    return out
      .split('\n')
      .map((line) => line.split('\t'))
      .filter(([lineVhost]) => lineVhost === vhost)
      .map(([, state, properties]) => ({ name: /"connection_name","([^"]*)"/.exec(properties ?? '')?.[1] ?? '?', state: state ?? '?' }));
  }

  async queues(vhost: string): Promise<QueueDepth[]> {
    const out = await this.ctl(['list_queues', '-p', vhost, '--no-table-headers', 'name', 'messages_ready', 'messages_unacknowledged']);
    return out
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .filter((fields) => fields.length === 3)
      .map(([name, ready, unacked]) => ({ name: name!, ready: Number(ready), unacked: Number(unacked) }));
  }

  /** Stops the node (and the Erlang VM); kills it if it does not stop. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    try {
      await this.ctl(['stop'], 30_000);
    } catch (error) {
      log(`rabbitmqctl stop failed, killing the node: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
    }
    const pid = this.pidFromFile();
    for (const target of [pid, server.pid]) {
      if (target !== undefined && isAlive(target)) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
    }
    if (server.exitCode === null && server.signalCode === null) {
      await Promise.race([new Promise((resolve) => server.once('exit', resolve)), pause(5_000)]);
    }
  }

  private async awaitStartup(timeoutMs: number): Promise<void> {
    // await_startup fails at once while the node has not registered with epmd yet: poll it.
    await waitFor('the private RabbitMQ node to start', async () => (await this.ctl(['await_startup', '--timeout', '10'], 20_000), true), {
      timeoutMs,
      intervalMs: 500,
    });
  }

  private pidFromFile(): number | undefined {
    try {
      const pid = Number(readFileSync(this.env.RABBITMQ_PID_FILE!, 'utf8').trim());
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }
}

/** RabbitMQ's rabbit_password_hashing_sha256: base64(salt ++ sha256(salt ++ password)), 4-byte salt. */
function hashPassword(password: string): string {
  const salt = randomBytes(4);
  return Buffer.concat([salt, createHash('sha256').update(Buffer.concat([salt, Buffer.from(password, 'utf8')])).digest()]).toString('base64');
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
