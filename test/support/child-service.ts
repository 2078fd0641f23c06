import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import readline from 'node:readline';

export const REPO_ROOT = path.resolve(__dirname, '../..');

/** A free TCP port on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A process started from the built code (`npm run build`), with its output kept for assertions. */
export class ChildService {
  readonly output: string[] = [];
  private readonly exited: Promise<number | null>;

  private constructor(readonly process: ChildProcess) {
    for (const stream of [process.stdout!, process.stderr!]) {
      readline.createInterface({ input: stream }).on('line', (line) => {
        this.output.push(line);
        if (globalThis.process.env.TEST_LOGS) globalThis.process.stdout.write(`${line}\n`);
      });
    }
    this.exited = new Promise((resolve) => process.on('exit', (code) => resolve(code)));
  }

  static start(script: string, env: NodeJS.ProcessEnv): ChildService {
    const child = spawn(globalThis.process.execPath, [path.join(REPO_ROOT, script)], {
      cwd: REPO_ROOT,
      env: { ...globalThis.process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new ChildService(child);
  }

  /** Resolves with the exit code once the process ends on its own. */
  waitForExit(): Promise<number | null> {
    return this.exited;
  }

  /** Sends SIGTERM and resolves with the exit code. */
  async stop(): Promise<number | null> {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill('SIGTERM');
    return this.exited;
  }
}
