import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { errorMessage, log, pause, waitFor } from './util';

export type ServiceName = 'ordering' | 'payments';

/** The library logs this, at log level, for each delivery its inbox recognised as already handled. */
const DUPLICATE_SKIPPED = /Skipped duplicate delivery of message/;
/** ... and this when one of its RabbitMQ connections is back after a loss (`(consuming, …)` or `(publishing, …)`). */
const BROKER_RECONNECTED = /Reconnected to amqps?:\/\/\S+ \((consuming|publishing),/;

export interface ServiceLaunch {
  readonly name: ServiceName;
  readonly instance: number;
  readonly port: number;
  /** The built example (a snapshot taken when the suite started) and how to run it. */
  readonly entry: string;
  readonly env: NodeJS.ProcessEnv;
  readonly logDir: string;
}

/**
 * One example service (ordering or payments) as a child process that the suite can SIGKILL and start
 * again. Its stdout and stderr go to a log file per incarnation; the inbox's "Skipped duplicate delivery"
 * lines are counted across incarnations. A death the suite did not cause is counted as a crash and the
 * service is started again (after a pause that grows), so a scenario can still be checked for loss.
 */
export class ServiceProcess {
  private child: ChildProcess | undefined;
  private exitExpected = false;
  private log: WriteStream | undefined;
  private readonly recent: string[] = [];
  private restartDelayMs = 500;
  private supervising = true;
  incarnations = 0;
  duplicateSkips = 0;
  /** Reconnections seen in its log, per connection. */
  readonly brokerReconnects = { consuming: 0, publishing: 0 };
  crashes = 0;
  readonly label: string;

  constructor(private readonly launch: ServiceLaunch) {
    this.label = `${launch.name}#${launch.instance}`;
  }

  get url(): string {
    return `http://127.0.0.1:${this.launch.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts a new incarnation and resolves once it answers HTTP (its module, relay and consumers are up). */
  async start(): Promise<void> {
    this.incarnations += 1;
    this.exitExpected = false;
    const logFile = path.join(this.launch.logDir, `${this.launch.name}-${this.launch.instance}.${this.incarnations}.log`);
    this.log = createWriteStream(logFile);
    const child = spawn(process.execPath, [this.launch.entry], {
      env: { ...this.launch.env, PORT: String(this.launch.port), NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const logStream = this.log;
    for (const stream of [child.stdout!, child.stderr!]) {
      readline.createInterface({ input: stream }).on('line', (line) => {
        logStream.write(`${line}\n`);
        this.recent.push(line);
        if (this.recent.length > 40) this.recent.shift();
        if (DUPLICATE_SKIPPED.test(line)) this.duplicateSkips += 1;
        const reconnected = BROKER_RECONNECTED.exec(line);
        if (reconnected) this.brokerReconnects[reconnected[1] as 'consuming' | 'publishing'] += 1;
      });
    }
    child.once('exit', (code, signal) => {
      logStream.end(`--- exited (${signal ?? code}) ---\n`);
      if (this.exitExpected) return;
      this.crashes += 1;
      log(`!! ${this.label} (pid ${child.pid}) died unexpectedly (${signal ?? code}); last lines:\n    ${this.recent.slice(-15).join('\n    ')}`);
      if (this.supervising) void this.restartAfterCrash();
    });
    await waitFor(
      `${this.label} to answer HTTP`,
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${this.label} exited while starting; see ${logFile}`);
        // Ordering answers 404 for an unknown order, payments 404 for any path: either proves Nest is listening,
        // which it does only after the integration-events module started (relay and consumers).
        const response = await fetch(`${this.url}/orders/${randomUUID()}`, { signal: AbortSignal.timeout(2_000) });
        return response.status === 404;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
  }

  /** Sends `signal` (the suite's own fault) and resolves when the process is gone. */
  async kill(signal: NodeJS.Signals): Promise<number | undefined> {
    const child = this.child;
    if (!child || !this.running) return undefined;
    this.exitExpected = true;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const pid = child.pid;
    child.kill(signal);
    await exited;
    return pid;
  }

  /** Graceful stop (SIGTERM, as an orchestrator would), SIGKILL after `timeoutMs`. No more crash restarts. */
  async stop(timeoutMs = 20_000): Promise<void> {
    this.supervising = false;
    const child = this.child;
    if (!child || !this.running) return;
    this.exitExpected = true;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const stopped = await Promise.race([exited.then(() => true), pause(timeoutMs).then(() => false)]);
    if (!stopped) {
      log(`!! ${this.label} did not stop within ${timeoutMs} ms of SIGTERM: SIGKILL`);
      child.kill('SIGKILL');
      await exited;
    } else if (child.exitCode !== 0 && child.signalCode !== 'SIGTERM') {
      // Nest's shutdown hooks re-raise the signal once the application has closed: SIGTERM is a clean exit.
      log(`!! ${this.label} exited with ${child.signalCode ?? child.exitCode} on SIGTERM`);
    }
  }

  private async restartAfterCrash(): Promise<void> {
    await pause(this.restartDelayMs);
    this.restartDelayMs = Math.min(this.restartDelayMs * 2, 8_000);
    if (!this.supervising || this.running) return;
    try {
      await this.start();
      log(`${this.label} started again after its crash (pid ${this.pid})`);
    } catch (error) {
      log(`!! ${this.label} could not be started again: ${errorMessage(error)}`);
    }
  }
}
