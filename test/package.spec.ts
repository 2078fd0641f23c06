import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_RETRY_POLICY, RetryPolicy } from '../libs/integration-events/src/retry/retry-policy';
import { REPO_ROOT } from './support/child-service';
import { TEST_DATABASE_URL, TEST_RABBITMQ_URL } from './support/services';
import { TestNamespace } from './support/test-namespace';

const execFileAsync = promisify(execFile);

/** execFile that puts the command's own output into the error, so a failure says why. */
async function run(file: string, args: string[], options: Parameters<typeof execFileAsync>[2] = {}) {
  try {
    return await execFileAsync(file, args, { encoding: 'utf8', ...options });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    (error as Error).message += `\n${stdout ?? ''}\n${stderr ?? ''}`;
    throw error;
  }
}

const PEERS = [
  '@nestjs/common',
  '@nestjs/core',
  '@nestjs/cqrs',
  '@nestjs/typeorm',
  'typeorm',
  'nestjs-cls',
  '@nestjs-cls/transactional',
  '@nestjs-cls/transactional-adapter-typeorm',
  'class-transformer',
  'class-validator',
  'reflect-metadata',
  'rxjs',
  'pg',
  '@opentelemetry/api',
  '@types/node',
];

/** What a user would write, in a project of their own that installed the packed tarball. */
const CONSUMER_TS = `
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { ClsPluginTransactional, TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { DataSource } from 'typeorm';
import {
  createInboxMigration, createOutboxMigration, IntegrationEvent, IntegrationEventHandler, IntegrationEventPublisher,
  IntegrationEventsModule, type IIntegrationEventHandler, type IntegrationEventContext,
} from 'nestjs-integration-events';

const [databaseUrl, rabbitmqUrl, schema, exchange] = process.argv.slice(2) as [string, string, string, string];

@IntegrationEvent({ name: 'packed.hello', version: 1 })
class HelloIntegrationEvent { constructor(readonly greeting: string) {} }

let received: string | undefined;
@IntegrationEventHandler(HelloIntegrationEvent, { queue: schema + '.hello' })
class HelloHandler implements IIntegrationEventHandler<HelloIntegrationEvent> {
  handle(event: HelloIntegrationEvent, context: IntegrationEventContext): void {
    received = event.greeting + ' ' + (event instanceof HelloIntegrationEvent) + ' ' + context.attempt;
  }
}

@Module({
  imports: [
    TypeOrmModule.forRoot({ type: 'postgres', url: databaseUrl, migrations: [createOutboxMigration({ schema }), createInboxMigration({ schema })],
      migrationsRun: true, migrationsTableName: schema + '_migrations' }),
    ClsModule.forRoot({ global: true, plugins: [new ClsPluginTransactional({ imports: [TypeOrmModule],
      adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })] }),
    IntegrationEventsModule.forRoot({ serviceName: schema.replace(/_/g, '-'), rabbitmq: { url: rabbitmqUrl, exchange }, outbox: { schema } }),
  ],
  providers: [HelloHandler],
})
class AppModule {}

async function main(): Promise<void> {
  const app = await NestFactory.createApplicationContext(AppModule, { logger: ['error'] });
  await app.get(TransactionHost).withTransaction(() => app.get(IntegrationEventPublisher).publish(new HelloIntegrationEvent('hello')));
  const deadline = Date.now() + 10_000;
  while (!received && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  await app.get(DataSource).query('DROP TABLE IF EXISTS "' + schema + '_migrations"');
  await app.close();
  console.log('RECEIVED: ' + received);
}
main().catch((error) => { console.error(error); process.exit(1); });
`;

/**
 * `npm pack` produces a package that installs in a separate project, type-checks there against its
 * own .d.ts files, and works against the real services.
 */
describe('the packed npm package', () => {
  let workDir: string;
  let ns: TestNamespace;
  /** The consumer project's own schema: its migration creates the outbox there. */
  const schema = () => `${ns.schema}_pkg`;

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), 'ie-pack-'));
    ns = await TestNamespace.create();
  });

  afterAll(async () => {
    await rm(workDir, { recursive: true, force: true });
    // The consumer project's handler queue, with its dead-letter queue and its wait queues (default delays).
    const hello = ns.trackQueue(`${schema()}.hello`);
    ns.trackQueue(`${hello}.dlq`);
    const { maxAttempts, initialDelayMs, multiplier, maxDelayMs, jitter } = DEFAULT_RETRY_POLICY;
    const defaults = new RetryPolicy(maxAttempts, initialDelayMs, multiplier, maxDelayMs, jitter, () => true);
    for (const tier of defaults.tiers()) ns.trackQueue(`${hello}.retry.${tier}ms`);
    await (await ns.sql()).query(`DROP SCHEMA IF EXISTS "${schema()}" CASCADE`);
    await ns?.cleanup();
  });

  /**
   * Packs from a copy of the library's sources, so `prepack` (build, copy README and CHANGELOG) runs for
   * real without rebuilding the dist/ that other tests' processes are loading at the same time.
   */
  async function packFromCopy(): Promise<void> {
    const copy = path.join(workDir, 'repo');
    const library = path.join(copy, 'libs', 'integration-events');
    await mkdir(library, { recursive: true });
    for (const file of ['package.json', 'tsconfig.build.json', 'LICENSE', 'src']) {
      await cp(path.join(REPO_ROOT, 'libs', 'integration-events', file), path.join(library, file), { recursive: true });
    }
    for (const file of ['tsconfig.base.json', 'README.md', 'CHANGELOG.md']) {
      await cp(path.join(REPO_ROOT, file), path.join(copy, file));
    }
    await symlink(path.join(REPO_ROOT, 'node_modules'), path.join(copy, 'node_modules'), 'dir');
    await run('npm', ['pack', '--pack-destination', workDir], { cwd: library, env: { ...process.env, PATH: `${path.join(REPO_ROOT, 'node_modules', '.bin')}:${process.env.PATH}` } });
  }

  it('installs, type-checks and delivers an event in a fresh project', async () => {
    await packFromCopy();
    const tarball = (await readdir(workDir)).find((file) => file.endsWith('.tgz'));
    expect(tarball).toBeDefined();
    const { stdout: listing } = await run('tar', ['-tzf', path.join(workDir, tarball!)]);
    expect(typeof listing).toBe('string');
    expect(listing).toContain('package/dist/index.js');
    expect(listing).toContain('package/dist/index.d.ts');
    expect(listing).toContain('package/LICENSE');
    expect(listing).toContain('package/README.md');
    expect(listing).toContain('package/CHANGELOG.md');
    expect(listing).not.toMatch(/\.spec\.(js|ts)/);
    expect(listing).not.toMatch(/package\/src\//);

    const project = path.join(workDir, 'consumer');
    await run('mkdir', ['-p', path.join(project, 'src')]);
    const dependencies: Record<string, string> = { 'nestjs-integration-events': `file:../${tarball}` };
    for (const peer of PEERS) {
      const manifest = JSON.parse(await readFile(path.join(REPO_ROOT, 'node_modules', peer, 'package.json'), 'utf8'));
      dependencies[peer] = manifest.version;
    }
    await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, dependencies }, null, 2));
    await writeFile(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022', module: 'node20', moduleResolution: 'node16', strict: true, experimentalDecorators: true,
          emitDecoratorMetadata: true, outDir: 'out', rootDir: 'src', types: ['node'], skipLibCheck: true,
        },
        include: ['src'],
      }),
    );
    await writeFile(path.join(project, 'src', 'main.ts'), CONSUMER_TS);
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], {
      cwd: project,
      timeout: 240_000,
    });
    // Type-check against the package's own .d.ts (not its sources), then run the compiled code.
    await run(process.execPath, [path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-p', project]);
    const { stdout } = await run(
      process.execPath,
      [path.join(project, 'out', 'main.js'), TEST_DATABASE_URL, TEST_RABBITMQ_URL, schema(), ns.exchange],
      { cwd: project, timeout: 60_000 },
    );
    expect(stdout).toContain('RECEIVED: hello true 1');
  }, 300_000);
});
