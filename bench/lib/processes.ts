/**
 * Child processes of the harness. Every system under test (ours and the baselines) runs in processes
 * of its own, so that each has its own event loop and its own RSS, and the parent only orchestrates.
 *
 * Protocol (IPC, structured clone so typed arrays travel as such): the parent forks `child.js <role>`
 * and sends `{ type: 'init', args }`; the child sets up and sends `ready`; the parent sends `go`; the
 * child may send `done`/`progress`; the parent sends `stop`; the child tears down, sends `result`
 * (with its peak RSS) and exits. At any time the parent may send `heap`: the child answers with its
 * heap in use (after a full collection when started with `exposeGc`).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, closeSync } from 'node:fs';
import { join } from 'node:path';

export interface Message {
  type: string;
  [key: string]: unknown;
}

export interface HarnessContext {
  /** Where child logs go (`bench/results/<stamp>-logs`). */
  logDir: string;
  /** When set, children are run with `--cpu-prof` and write their profile here. */
  cpuProfDir: string | undefined;
  /** With --timelines: where paced runs write their per-event times and the stall probe's samples. */
  timelinesDir?: string | undefined;
}

const live = new Set<ChildHandle>();
/** Other programs the harness runs (pgbench), killed with the children. */
const programs = new Set<ChildProcess>();

/** Kills every child still running (harness failure or Ctrl-C). Only children this harness started. */
export function killChildren(): void {
  for (const child of live) child.kill();
  for (const program of programs) program.kill();
}

/** Has `killChildren()` stop a program the harness spawned (not a forked role), until it exits. */
export function trackProgram(program: ChildProcess): void {
  programs.add(program);
  program.once('exit', () => programs.delete(program));
}

/** Resident set size of a process right now, from /proc (Linux), in MB; NaN elsewhere. */
export function readRssMb(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /VmRSS:\s+(\d+) kB/.exec(status);
    return match ? Number(match[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** What a child reports of its memory on `heap` (MB). */
export interface HeapSample {
  /** Measured right after a full garbage collection (the child runs with --expose-gc). */
  afterGc: boolean;
  heapUsedMb: number;
  /** Memory outside the V8 heap (Buffers). */
  externalMb: number;
}

export class ChildHandle {
  readonly pid: number;
  ready: Message = { type: 'ready' };
  /** [wall ms, RSS MB] samples taken by the parent while `sampleRss()` runs. */
  readonly rssSamples: Array<[number, number]> = [];
  private readonly received: Message[] = [];
  private readonly waiters: Array<{ type: string; resolve: (m: Message) => void; reject: (e: Error) => void }> = [];
  private exited: Error | undefined;
  private exitCode: number | null = null;
  private readonly exitPromise: Promise<void>;
  private sampler: NodeJS.Timeout | undefined;

  private constructor(
    readonly label: string,
    private readonly process: ChildProcess,
    readonly logFile: string,
  ) {
    this.pid = process.pid!;
    process.on('message', (message: Message) => this.onMessage(message));
    this.exitPromise = new Promise((resolve) => {
      process.on('exit', (code, signal) => {
        this.exitCode = code;
        live.delete(this);
        this.stopSampling();
        this.exited = new Error(`child "${label}" exited (code ${code}, signal ${signal}); see ${logFile}`);
        for (const waiter of this.waiters.splice(0)) waiter.reject(this.exited);
        resolve();
      });
    });
  }

  /** Forks a child for `role`, sends it its arguments and waits until it is ready. */
  static async start(
    context: HarnessContext,
    role: string,
    label: string,
    args: object,
    options: { profile?: boolean; exposeGc?: boolean } = {},
  ): Promise<ChildHandle> {
    mkdirSync(context.logDir, { recursive: true });
    const logFile = join(context.logDir, `${label}.log`);
    const fd = openSync(logFile, 'a');
    const execArgv = [...process.execArgv];
    if ((options.profile ?? true) && context.cpuProfDir) {
      const dir = join(context.cpuProfDir, label);
      mkdirSync(dir, { recursive: true });
      execArgv.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
    }
    if (options.exposeGc) execArgv.push('--expose-gc');
    const child = fork(join(__dirname, '..', 'child.js'), [role, label], {
      stdio: ['ignore', fd, fd, 'ipc'],
      serialization: 'advanced',
      execArgv,
    });
    closeSync(fd);
    const handle = new ChildHandle(label, child, logFile);
    live.add(handle);
    handle.send({ type: 'init', args });
    handle.ready = await handle.next('ready', 120_000);
    return handle;
  }

  /** Why the child is gone (it exited), or undefined while it runs. */
  get exitError(): Error | undefined {
    return this.exited;
  }

  /** The child's V8 heap in use and its memory outside the heap, in MB, after a full collection if it can. */
  async heap(): Promise<HeapSample> {
    this.send({ type: 'heap' });
    const reply = await this.next('heap', 60_000);
    return { afterGc: reply.afterGc as boolean, heapUsedMb: reply.heapUsedMb as number, externalMb: reply.externalMb as number };
  }

  send(message: Message): void {
    if (!this.exited) this.process.send(message);
  }

  /** The next message of this type from the child (already received ones first). */
  next(type: string, timeoutMs = 600_000): Promise<Message> {
    const index = this.received.findIndex((m) => m.type === type);
    if (index >= 0) return Promise.resolve(this.received.splice(index, 1)[0]!);
    if (this.exited) return Promise.reject(this.exited);
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`child "${this.label}": no "${type}" within ${timeoutMs} ms; see ${this.logFile}`));
      }, timeoutMs);
      const waiter = {
        type,
        resolve: (m: Message) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Asks the child to tear down; resolves with its result once it has exited. */
  async stop(timeoutMs = 120_000): Promise<Message> {
    this.send({ type: 'stop' });
    const result = await this.next('result', timeoutMs);
    await Promise.race([this.exitPromise, new Promise((r) => setTimeout(r, 10_000))]);
    if (this.exitCode !== 0 && this.exitCode !== null) throw new Error(`child "${this.label}" exited with ${this.exitCode}; see ${this.logFile}`);
    return result;
  }

  /** Samples this child's RSS from /proc every `intervalMs` until it exits or `stopSampling()`. */
  sampleRss(intervalMs: number): void {
    this.stopSampling();
    const take = () => {
      const mb = readRssMb(this.pid);
      if (Number.isFinite(mb)) this.rssSamples.push([Date.now(), mb]);
    };
    take();
    this.sampler = setInterval(take, intervalMs);
  }

  stopSampling(): void {
    if (this.sampler) clearInterval(this.sampler);
    this.sampler = undefined;
  }

  kill(): void {
    if (!this.exited) this.process.kill('SIGKILL');
  }

  private onMessage(message: Message): void {
    const index = this.waiters.findIndex((w) => w.type === message.type);
    if (index >= 0) this.waiters.splice(index, 1)[0]!.resolve(message);
    else this.received.push(message);
  }
}

/** Peak RSS (MB) a child reported for itself (`process.resourceUsage().maxRSS`). */
export function peakRssMb(result: Message): number {
  return typeof result.maxRssKb === 'number' ? result.maxRssKb / 1024 : NaN;
}
