/**
 * Where the CPU went during a measured window (Linux /proc): the machine's busy time, and that of each
 * child process, of the PostgreSQL server (postmaster and all its backends) and of the RabbitMQ node
 * (the processes listening on the ports of DATABASE_URL / RABBITMQ_URL, when they are local). On a
 * 2-core machine where everything shares the cores, "CPU ms per event" of each part says what a
 * pipeline costs; "other" is what the rest of the machine used meanwhile (another job skews a round).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { DATABASE_URL, RABBITMQ_URL } from './helpers';

const TICK_MS = 10; // USER_HZ = 100 on Linux

/** A process's CPU so far (its own, and its reaped children's) and its parent. */
interface ProcStat {
  cpuMs: number;
  childrenMs: number;
  ppid: number;
}

function readStat(pid: number): ProcStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces), from field 3 on.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const n = (i: number) => Number(fields[i - 3]);
    return { ppid: n(4), cpuMs: (n(14) + n(15)) * TICK_MS, childrenMs: (n(16) + n(17)) * TICK_MS };
  } catch {
    return undefined;
  }
}

/** A process's command line ('' once it is gone); PostgreSQL names each backend's kind there. */
function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

function pids(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

/** The process listening on a local TCP port, found through /proc/net/tcp and the sockets' inodes. */
function listenerPid(port: number): number | undefined {
  try {
    const hex = port.toString(16).toUpperCase().padStart(4, '0');
    const inodes = new Set<string>();
    for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
      for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
        const cols = line.trim().split(/\s+/);
        if (cols[1]?.endsWith(`:${hex}`) && cols[3] === '0A') inodes.add(cols[9]!);
      }
    }
    for (const pid of pids()) {
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${pid}/fd`);
      } catch {
        continue;
      }
      for (const fd of fds) {
        try {
          const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
          const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
          if (inode && inodes.has(inode)) return pid;
        } catch {
          // the fd closed meanwhile
        }
      }
    }
  } catch {
    // not Linux
  }
  return undefined;
}

function localPort(url: string, fallback: number): number | undefined {
  try {
    const parsed = new URL(url);
    if (!['127.0.0.1', 'localhost', '::1', '[::1]'].includes(parsed.hostname)) return undefined;
    return Number(parsed.port || fallback);
  } catch {
    return undefined;
  }
}

export interface CpuSample {
  /** CPU the machine used (user, nice, system, irq, softirq); not steal, which another guest used. */
  machineBusyMs: number;
  /** Time the hypervisor ran another guest while this one had work (reported apart, not as busy). */
  machineStealMs: number;
  wallMs: number;
  parts: Record<string, number>;
}

export class CpuMeter {
  private constructor(
    private readonly postmaster: number | undefined,
    private readonly rabbit: number | undefined,
  ) {}

  /** Finds the local servers once (a scan of /proc). */
  static create(): CpuMeter {
    const pg = localPort(DATABASE_URL, 5432);
    const amqp = localPort(RABBITMQ_URL, 5672);
    return new CpuMeter(pg ? listenerPid(pg) : undefined, amqp ? listenerPid(amqp) : undefined);
  }

  /** CPU used so far by the machine, the servers and the given processes (ms). */
  sample(children: Record<string, number>): CpuSample {
    const stat = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = stat as number[];
    const parts: Record<string, number> = {};
    for (const [label, pid] of Object.entries(children)) parts[label] = readStat(pid)?.cpuMs ?? NaN;
    if (this.postmaster) parts.postgres = this.tree(this.postmaster);
    if (this.rabbit) parts.rabbitmq = this.tree(this.rabbit);
    return { machineBusyMs: (user! + nice! + system! + irq! + softirq!) * TICK_MS, machineStealMs: steal! * TICK_MS, wallMs: Date.now(), parts };
  }

  /**
   * CPU per event (ms) of each part between two samples, "other" (the rest of the machine: the parent,
   * other jobs, the kernel's own threads) and the machine's busy share (% of all cores); steal (% of all
   * cores: the hypervisor running another guest) apart, in neither.
   */
  static perEvent(a: CpuSample, b: CpuSample, events: number, cores: number): Record<string, number> {
    const out: Record<string, number> = {};
    let known = 0;
    for (const [label, before] of Object.entries(a.parts)) {
      const used = (b.parts[label] ?? NaN) - before;
      if (Number.isFinite(used)) known += used;
      out[`cpu.${label}`] = used / events;
    }
    const busy = b.machineBusyMs - a.machineBusyMs;
    out['cpu.other'] = Math.max(0, busy - known) / events;
    out['cpu.total'] = busy / events;
    out.machineBusyPct = (busy / ((b.wallMs - a.wallMs) * cores)) * 100;
    out.machineStealPct = ((b.machineStealMs - a.machineStealMs) / ((b.wallMs - a.wallMs) * cores)) * 100;
    return out;
  }

  /** The processes PostgreSQL runs now (the postmaster and its children), if it is local. */
  postgresPids(): Set<number> | undefined {
    return this.postmaster ? new Set(this.members(this.postmaster).keys()) : undefined;
  }

  /**
   * Waits (up to `timeoutMs`) until the client backends PostgreSQL started since `before` have exited:
   * those of a client that just disconnected (pgbench) are still exiting, and a sample taken meanwhile
   * can miss one's CPU entirely (read after the postmaster, gone before its own line is read, and not yet
   * in the postmaster's counters). Autovacuum workers started meanwhile are not waited for.
   */
  async settlePostgres(before: Set<number> | undefined, timeoutMs = 5_000): Promise<void> {
    if (!before || !this.postmaster) return;
    const deadline = Date.now() + timeoutMs;
    const exiting = (): boolean =>
      [...this.members(this.postmaster!).keys()].some((pid) => !before.has(pid) && !commandLine(pid).includes('autovacuum'));
    while (exiting() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  }

  /** A process and its descendants: live ones, plus what exited ones left in their parent's counters. */
  private tree(root: number): number {
    let ms = 0;
    for (const stat of this.members(root).values()) ms += stat.cpuMs + stat.childrenMs;
    return ms;
  }

  /** The live processes of a tree, by pid. */
  private members(root: number): Map<number, ProcStat> {
    const all = pids()
      .map((pid) => ({ pid, stat: readStat(pid) }))
      .filter((p): p is { pid: number; stat: ProcStat } => p.stat !== undefined);
    const inTree = new Map<number, ProcStat>();
    const rootStat = all.find((p) => p.pid === root)?.stat;
    if (rootStat) inTree.set(root, rootStat);
    let grew = true;
    while (grew) {
      grew = false;
      for (const p of all) {
        if (!inTree.has(p.pid) && inTree.has(p.stat.ppid)) {
          inTree.set(p.pid, p.stat);
          grew = true;
        }
      }
    }
    return inTree;
  }
}
