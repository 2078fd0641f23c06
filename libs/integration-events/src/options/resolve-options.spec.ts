import { InProcessBroker } from '../transport/in-process/in-process-broker';
import { IntegrationEventsError } from '../errors/integration-events.error';
import { InvalidIntegrationEventsOptionsError } from '../errors/invalid-options.error';
import { DEFAULT_OPTIONS } from './default-options';
import type { IntegrationEventsModuleOptions } from './integration-events-module-options.interface';
import { resolveOptions } from './resolve-options';

const URL_WITH_PASSWORD = 'amqp://guest:s3cret-pw@localhost:5672';
const MINIMAL: IntegrationEventsModuleOptions = { serviceName: 'ordering', rabbitmq: { url: URL_WITH_PASSWORD } };

type Sections = 'rabbitmq' | 'outbox' | 'inbox' | 'relay' | 'consumer';

/** The minimal options with some fields of one section replaced; values are untyped on purpose. */
function withSection(section: Sections, values: Record<string, unknown>): IntegrationEventsModuleOptions {
  const base = section === 'rabbitmq' ? { url: URL_WITH_PASSWORD } : {};
  return { ...MINIMAL, [section]: { ...base, ...values } } as IntegrationEventsModuleOptions;
}

/** The minimal options with some top-level fields replaced; values are untyped on purpose. */
function withTop(values: Record<string, unknown>): IntegrationEventsModuleOptions {
  return { ...MINIMAL, ...values } as IntegrationEventsModuleOptions;
}

/** Runs resolveOptions, expecting it to refuse the input, and returns the error. */
function refusal(input: unknown): InvalidIntegrationEventsOptionsError {
  let thrown: unknown;
  try {
    resolveOptions(input as IntegrationEventsModuleOptions);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(InvalidIntegrationEventsOptionsError);
  return thrown as InvalidIntegrationEventsOptionsError;
}

describe('resolveOptions', () => {
  describe('defaults', () => {
    it('fills every optional field from DEFAULT_OPTIONS', () => {
      expect(resolveOptions(MINIMAL)).toStrictEqual({
        serviceName: 'ordering',
        rabbitmq: {
          url: URL_WITH_PASSWORD,
          redactedUrl: 'amqp://guest:***@localhost:5672',
          socketOptions: {},
          exchange: DEFAULT_OPTIONS.rabbitmq.exchange,
          heartbeatSeconds: DEFAULT_OPTIONS.rabbitmq.heartbeatSeconds,
          reconnectInitialDelayMs: DEFAULT_OPTIONS.rabbitmq.reconnectInitialDelayMs,
          reconnectMaxDelayMs: DEFAULT_OPTIONS.rabbitmq.reconnectMaxDelayMs,
          connectionName: 'ordering',
        },
        inProcess: undefined,
        outbox: {
          schema: undefined,
          table: DEFAULT_OPTIONS.outbox.table,
          maxPayloadBytes: DEFAULT_OPTIONS.outbox.maxPayloadBytes,
          retentionMs: DEFAULT_OPTIONS.outbox.retentionMs,
          preparedStatements: DEFAULT_OPTIONS.outbox.preparedStatements,
        },
        inbox: { schema: undefined, ...DEFAULT_OPTIONS.inbox },
        cleanup: { ...DEFAULT_OPTIONS.cleanup },
        relay: { ...DEFAULT_OPTIONS.relay },
        consumer: { ...DEFAULT_OPTIONS.consumer, retry: {}, onDeadLetter: undefined },
        cqrs: { ...DEFAULT_OPTIONS.cqrs },
        dataSourceName: DEFAULT_OPTIONS.dataSourceName,
        transactionConnectionName: undefined,
      });
    });

    it('uses the values documented on IntegrationEventsModuleOptions and in the README\'s options table', () => {
      const resolved = resolveOptions(MINIMAL);
      expect(resolved.rabbitmq).toMatchObject({
        exchange: 'integration-events',
        heartbeatSeconds: 10,
        reconnectInitialDelayMs: 500,
        reconnectMaxDelayMs: 30_000,
      });
      expect(resolved.outbox).toStrictEqual({
        schema: undefined,
        table: 'integration_events_outbox',
        maxPayloadBytes: 262_144,
        retentionMs: 86_400_000,
        preparedStatements: true,
      });
      // README's options table: inbox.retentionMs `604800000` (7 days), cleanup every `60000` ms in batches of `1000`.
      expect(resolved.inbox).toStrictEqual({ enabled: true, schema: undefined, table: 'integration_events_inbox', retentionMs: 604_800_000 });
      expect(resolved.cleanup).toStrictEqual({ enabled: true, intervalMs: 60_000, batchSize: 1_000 });
      expect(resolved.relay).toStrictEqual({
        enabled: true,
        pollIntervalMs: 1_000,
        batchSize: 200,
        leaseMs: 30_000,
        confirmTimeoutMs: 10_000,
        maxUnconfirmed: 1_000,
        retryInitialDelayMs: 1_000,
        retryMaxDelayMs: 60_000,
      });
      expect(resolved.consumer).toStrictEqual({
        enabled: true,
        prefetch: 50,
        concurrency: 10,
        queueType: 'classic',
        maxBodyBytes: 1_048_576,
        maxDepth: 64,
        shutdownTimeoutMs: 10_000,
        ackDelayMs: 5,
        retry: {},
        handlerTimeoutMs: 60_000,
        onDeadLetter: undefined,
      });
      expect(resolved.cqrs).toStrictEqual({ enabled: true, maxDispatchDepth: 10 });
      expect(resolved.dataSourceName).toBe('default');
    });

    it('defaults inbox.schema to the outbox\'s schema, and keeps an explicit one', () => {
      expect(resolveOptions(withSection('outbox', { schema: 'sales' })).inbox.schema).toBe('sales');
      expect(resolveOptions({ ...MINIMAL, outbox: { schema: 'sales' }, inbox: { schema: 'billing' } }).inbox.schema).toBe('billing');
    });

    it('defaults rabbitmq.connectionName to the serviceName, and keeps an explicit one', () => {
      expect(resolveOptions(MINIMAL).rabbitmq!.connectionName).toBe('ordering');
      expect(resolveOptions(withSection('rabbitmq', { connectionName: 'ordering-api #1' })).rabbitmq!.connectionName).toBe(
        'ordering-api #1',
      );
    });

    it('keeps every explicit value instead of the default', () => {
      const options: IntegrationEventsModuleOptions = {
        serviceName: 'billing.v2_eu-west',
        rabbitmq: {
          url: 'amqps://svc:pw@rabbit.internal:5671/prod',
          socketOptions: { servername: 'rabbit.internal' },
          exchange: 'company:events.v1',
          heartbeatSeconds: 30,
          reconnectInitialDelayMs: 100,
          reconnectMaxDelayMs: 100,
          connectionName: 'billing-worker',
        },
        outbox: { schema: 'messaging', table: 'Outbox_2', maxPayloadBytes: 64, retentionMs: 1_000, preparedStatements: false },
        inbox: { enabled: false, schema: 'inboxes', table: 'Inbox_2', retentionMs: 2_000 },
        cleanup: { enabled: false, intervalMs: 100, batchSize: 1 },
        relay: {
          enabled: false,
          pollIntervalMs: 10,
          batchSize: 10_000,
          leaseMs: 2_000,
          confirmTimeoutMs: 1_000,
          maxUnconfirmed: 1,
          retryInitialDelayMs: 5,
          retryMaxDelayMs: 5,
        },
        consumer: {
          enabled: false,
          prefetch: 65_535,
          concurrency: 7,
          queueType: 'quorum',
          maxBodyBytes: 1_024,
          maxDepth: 1_000,
          shutdownTimeoutMs: 0,
          ackDelayMs: 0,
          retry: { maxAttempts: 3, initialDelayMs: 10, multiplier: 3, maxDelayMs: 90, jitter: 0, retryable: () => false },
          handlerTimeoutMs: 5,
          onDeadLetter: () => undefined,
        },
        cqrs: { enabled: false, maxDispatchDepth: 1_000 },
        dataSourceName: 'outboxDb',
        transactionConnectionName: 'tx',
      };
      expect(resolveOptions(options)).toStrictEqual({
        ...options,
        rabbitmq: { ...options.rabbitmq, redactedUrl: 'amqps://svc:***@rabbit.internal:5671/prod' },
        inProcess: undefined,
      });
    });

    it('treats 0 and false as values, not as "left out"', () => {
      const resolved = resolveOptions({
        ...MINIMAL,
        rabbitmq: { url: URL_WITH_PASSWORD, heartbeatSeconds: 0 },
        relay: { enabled: false },
        consumer: { enabled: false, shutdownTimeoutMs: 0 },
      });
      expect(resolved.rabbitmq!.heartbeatSeconds).toBe(0);
      expect(resolved.relay.enabled).toBe(false);
      expect(resolved.consumer.enabled).toBe(false);
      expect(resolved.consumer.shutdownTimeoutMs).toBe(0);
    });

    it('passes rabbitmq.socketOptions through with its keys unchecked (they belong to amqplib)', () => {
      const socketOptions = { ca: ['-----BEGIN CERTIFICATE-----'], servername: 'rabbit', rejectUnauthorized: true };
      expect(resolveOptions(withSection('rabbitmq', { socketOptions })).rabbitmq!.socketOptions).toStrictEqual(socketOptions);
    });

    it('leaves outbox.schema undefined when it is not given (the search path decides)', () => {
      expect(resolveOptions(MINIMAL).outbox.schema).toBeUndefined();
    });
  });

  describe('the error of a refused option', () => {
    it('is an IntegrationEventsError carrying the field, the value and the fix', () => {
      const error = refusal(withSection('relay', { batchSize: 0 }));
      expect(error).toBeInstanceOf(IntegrationEventsError);
      expect(error.name).toBe('InvalidIntegrationEventsOptionsError');
      expect(error.field).toBe('relay.batchSize');
      expect(error.value).toBe(0);
      expect(error.expected).toBe('use a whole number from 1 to 10000');
      expect(error.message).toBe(
        'Invalid IntegrationEventsModule option "relay.batchSize" (got 0): use a whole number from 1 to 10000.',
      );
    });

    it('shows NaN and Infinity as they are (what Number() makes of a bad environment variable), not as null', () => {
      expect(refusal(withSection('relay', { batchSize: Number.NaN })).message).toContain('"relay.batchSize" (got NaN)');
      expect(refusal(withSection('relay', { leaseMs: Number.POSITIVE_INFINITY })).message).toContain('"relay.leaseMs" (got Infinity)');
      expect(refusal(withSection('relay', { leaseMs: null })).message).toContain('"relay.leaseMs" (got null)');
    });

    it('names "(options)" when the options themselves are not an object', () => {
      for (const input of [undefined, null, 'ordering', 42, [MINIMAL]]) {
        const error = refusal(input);
        expect(error.field).toBe('(options)');
        expect(error.expected).toBe('pass an options object to IntegrationEventsModule.forRoot()');
      }
    });
  });

  describe('validation names the refused field', () => {
    const cases: ReadonlyArray<[string, IntegrationEventsModuleOptions, string, unknown, string]> = [
      // [case, options, field, value reported, fragment of the fix]
      ['serviceName missing', { rabbitmq: { url: URL_WITH_PASSWORD } } as IntegrationEventsModuleOptions, 'serviceName', undefined, 'use 1-100 lower-case letters'],
      ['serviceName not a string', withTop({ serviceName: 42 }), 'serviceName', 42, 'e.g. "ordering"'],
      ['rabbitmq missing', { serviceName: 'ordering' } as IntegrationEventsModuleOptions, 'rabbitmq', undefined, 'give "rabbitmq": { url: "amqp://..." } to use RabbitMQ, or "inProcess": { broker }'],
      ['rabbitmq an array', withTop({ rabbitmq: [] }), 'rabbitmq', [], 'pass a "rabbitmq" object'],
      ['rabbitmq.url missing', withTop({ rabbitmq: {} }), 'rabbitmq.url', undefined, 'give an AMQP URL such as'],
      ['rabbitmq.url not a string', withSection('rabbitmq', { url: 5672 }), 'rabbitmq.url', 5672, 'give an AMQP URL such as'],
      ['rabbitmq.url without scheme', withSection('rabbitmq', { url: 'localhost:5672' }), 'rabbitmq.url', '<unparsable url>', '"amqps://" for TLS'],
      ['rabbitmq.url with another scheme', withSection('rabbitmq', { url: 'http://localhost:5672' }), 'rabbitmq.url', 'http://localhost:5672/', 'give an AMQP URL'],
      ['rabbitmq.url unparsable', withSection('rabbitmq', { url: 'amqp://localhost:99999' }), 'rabbitmq.url', '<unparsable url>', 'give an AMQP URL'],
      // amqplib would connect to localhost, and the logs would show "<unparsable url>".
      ['rabbitmq.url without a host', withSection('rabbitmq', { url: 'amqp://' }), 'rabbitmq.url', '<unparsable url>', 'give an AMQP URL'],
      ['rabbitmq.url with credentials but no host', withSection('rabbitmq', { url: 'amqp://guest:guest@' }), 'rabbitmq.url', 'amqp://guest:***@', 'give an AMQP URL'],
      ['rabbitmq.url with a small frameMax', withSection('rabbitmq', { url: 'amqp://guest:s3cret@host?frameMax=4096' }), 'rabbitmq.url', 'amqp://guest:***@host?frameMax=4096', "give frameMax at least 131072 (amqplib's default, asked for when it is left out)"],
      ['rabbitmq.url with a frameMax just below the default', withSection('rabbitmq', { url: 'amqp://host?frameMax=131071' }), 'rabbitmq.url', 'amqp://host?frameMax=131071', 'give frameMax at least 131072'],
      ['rabbitmq.url with frameMax not a number', withSection('rabbitmq', { url: 'amqp://host?frameMax=big' }), 'rabbitmq.url', 'amqp://host?frameMax=big', 'give frameMax at least 131072'],
      ['rabbitmq.socketOptions a string', withSection('rabbitmq', { socketOptions: 'tls' }), 'rabbitmq.socketOptions', 'tls', 'pass an object of amqplib socket options'],
      ['rabbitmq.socketOptions an array', withSection('rabbitmq', { socketOptions: [] }), 'rabbitmq.socketOptions', [], 'pass an object'],
      ['rabbitmq.exchange empty', withSection('rabbitmq', { exchange: '' }), 'rabbitmq.exchange', '', 'use 1-200 letters, digits'],
      ['rabbitmq.exchange with a space', withSection('rabbitmq', { exchange: 'my events' }), 'rabbitmq.exchange', 'my events', 'use 1-200 letters'],
      ['rabbitmq.exchange too long', withSection('rabbitmq', { exchange: 'x'.repeat(201) }), 'rabbitmq.exchange', 'x'.repeat(201), 'use 1-200'],
      ['rabbitmq.exchange not a string', withSection('rabbitmq', { exchange: 1 }), 'rabbitmq.exchange', 1, 'use 1-200'],
      ['rabbitmq.connectionName empty', withSection('rabbitmq', { connectionName: '' }), 'rabbitmq.connectionName', '', 'use a non-empty string of at most 200 characters'],
      ['rabbitmq.connectionName too long', withSection('rabbitmq', { connectionName: 'c'.repeat(201) }), 'rabbitmq.connectionName', 'c'.repeat(201), 'at most 200 characters'],
      ['rabbitmq.heartbeatSeconds negative', withSection('rabbitmq', { heartbeatSeconds: -1 }), 'rabbitmq.heartbeatSeconds', -1, 'use a whole number from 0 to 3600'],
      ['rabbitmq.heartbeatSeconds too big', withSection('rabbitmq', { heartbeatSeconds: 3_601 }), 'rabbitmq.heartbeatSeconds', 3_601, 'from 0 to 3600'],
      ['rabbitmq.heartbeatSeconds fractional', withSection('rabbitmq', { heartbeatSeconds: 1.5 }), 'rabbitmq.heartbeatSeconds', 1.5, 'use a whole number'],
      ['rabbitmq.heartbeatSeconds a numeric string', withSection('rabbitmq', { heartbeatSeconds: '10' }), 'rabbitmq.heartbeatSeconds', '10', 'use a whole number'],
      ['rabbitmq.reconnectInitialDelayMs 0', withSection('rabbitmq', { reconnectInitialDelayMs: 0 }), 'rabbitmq.reconnectInitialDelayMs', 0, 'from 1 to 600000'],
      ['rabbitmq.reconnectMaxDelayMs too big', withSection('rabbitmq', { reconnectMaxDelayMs: 3_600_001 }), 'rabbitmq.reconnectMaxDelayMs', 3_600_001, 'from 1 to 3600000'],
      ['rabbitmq.reconnectMaxDelayMs below the initial delay', withSection('rabbitmq', { reconnectInitialDelayMs: 1_000, reconnectMaxDelayMs: 999 }), 'rabbitmq.reconnectMaxDelayMs', 999, 'make it at least rabbitmq.reconnectInitialDelayMs'],
      ['rabbitmq.reconnectInitialDelayMs above the default max delay', withSection('rabbitmq', { reconnectInitialDelayMs: 60_000 }), 'rabbitmq.reconnectMaxDelayMs', 30_000, 'at least rabbitmq.reconnectInitialDelayMs'],
      ['outbox not an object', withTop({ outbox: 'outbox' }), 'outbox', 'outbox', 'pass an object or leave "outbox" out'],
      ['outbox.schema not a string', withSection('outbox', { schema: 1 }), 'outbox.schema', 1, 'use an SQL identifier'],
      ['outbox.table empty', withSection('outbox', { table: '' }), 'outbox.table', '', 'use an SQL identifier'],
      ['outbox.maxPayloadBytes too small', withSection('outbox', { maxPayloadBytes: 63 }), 'outbox.maxPayloadBytes', 63, 'from 64 to 134217728'],
      ['relay not an object', withTop({ relay: true }), 'relay', true, 'pass an object or leave "relay" out'],
      ['relay.enabled not a boolean', withSection('relay', { enabled: 'yes' }), 'relay.enabled', 'yes', 'use true or false'],
      ['outbox.preparedStatements not a boolean', withSection('outbox', { preparedStatements: 'no' }), 'outbox.preparedStatements', 'no', 'use true or false'],
      ['relay.pollIntervalMs too small', withSection('relay', { pollIntervalMs: 9 }), 'relay.pollIntervalMs', 9, 'from 10 to 3600000'],
      ['relay.batchSize 0', withSection('relay', { batchSize: 0 }), 'relay.batchSize', 0, 'from 1 to 10000'],
      ['relay.batchSize too big', withSection('relay', { batchSize: 10_001 }), 'relay.batchSize', 10_001, 'from 1 to 10000'],
      ['relay.batchSize NaN', withSection('relay', { batchSize: Number.NaN }), 'relay.batchSize', Number.NaN, 'use a whole number'],
      ['relay.leaseMs too small', withSection('relay', { leaseMs: 999 }), 'relay.leaseMs', 999, 'from 1000 to 3600000'],
      ['relay.confirmTimeoutMs too small', withSection('relay', { confirmTimeoutMs: 99 }), 'relay.confirmTimeoutMs', 99, 'from 100 to 600000'],
      ['relay.maxUnconfirmed 0', withSection('relay', { maxUnconfirmed: 0 }), 'relay.maxUnconfirmed', 0, 'from 1 to 100000'],
      ['relay.retryInitialDelayMs 0', withSection('relay', { retryInitialDelayMs: 0 }), 'relay.retryInitialDelayMs', 0, 'from 1 to 3600000'],
      ['relay.retryMaxDelayMs too big', withSection('relay', { retryMaxDelayMs: 86_400_001 }), 'relay.retryMaxDelayMs', 86_400_001, 'from 1 to 86400000'],
      ['relay.retryMaxDelayMs below the initial delay', withSection('relay', { retryInitialDelayMs: 2_000, retryMaxDelayMs: 1_999 }), 'relay.retryMaxDelayMs', 1_999, 'make it at least relay.retryInitialDelayMs'],
      ['consumer not an object', withTop({ consumer: [] }), 'consumer', [], 'pass an object or leave "consumer" out'],
      ['consumer.enabled not a boolean', withSection('consumer', { enabled: 1 }), 'consumer.enabled', 1, 'use true or false'],
      ['consumer.prefetch 0', withSection('consumer', { prefetch: 0 }), 'consumer.prefetch', 0, 'from 1 to 65535'],
      ['consumer.prefetch too big', withSection('consumer', { prefetch: 65_536 }), 'consumer.prefetch', 65_536, 'from 1 to 65535'],
      ['consumer.concurrency 0', withSection('consumer', { concurrency: 0 }), 'consumer.concurrency', 0, 'from 1 to 65535'],
      ['consumer.queueType unknown', withSection('consumer', { queueType: 'stream' }), 'consumer.queueType', 'stream', 'use "classic" or "quorum"'],
      ['consumer.maxBodyBytes too small', withSection('consumer', { maxBodyBytes: 1_023 }), 'consumer.maxBodyBytes', 1_023, 'from 1024 to 134217728'],
      ['consumer.maxDepth 0', withSection('consumer', { maxDepth: 0 }), 'consumer.maxDepth', 0, 'from 1 to 1000'],
      ['consumer.maxDepth too big', withSection('consumer', { maxDepth: 1_001 }), 'consumer.maxDepth', 1_001, 'from 1 to 1000'],
      ['consumer.shutdownTimeoutMs negative', withSection('consumer', { shutdownTimeoutMs: -1 }), 'consumer.shutdownTimeoutMs', -1, 'from 0 to 3600000'],
      ['consumer.ackDelayMs too big', withSection('consumer', { ackDelayMs: 1_001 }), 'consumer.ackDelayMs', 1_001, 'from 0 to 1000'],
      ['dataSourceName empty', withTop({ dataSourceName: '' }), 'dataSourceName', '', 'give the name of a TypeORM DataSource'],
      ['dataSourceName not a string', withTop({ dataSourceName: 1 }), 'dataSourceName', 1, 'or leave it out for "default"'],
      ['transactionConnectionName not a string', withTop({ transactionConnectionName: 1 }), 'transactionConnectionName', 1, 'give the connectionName of ClsPluginTransactional'],
      ['transactionConnectionName empty (nestjs-cls would take its default plugin)', withTop({ transactionConnectionName: '' }), 'transactionConnectionName', '', 'give the connectionName of ClsPluginTransactional'],
      // null is a value, not "left out": refused, never quietly replaced by the default.
      ['relay.batchSize null', withSection('relay', { batchSize: null }), 'relay.batchSize', null, 'use a whole number'],
      ['relay.enabled null', withSection('relay', { enabled: null }), 'relay.enabled', null, 'use true or false'],
      ['outbox.table null', withSection('outbox', { table: null }), 'outbox.table', null, 'use an SQL identifier'],
      ['inbox.schema null', withSection('inbox', { schema: null }), 'inbox.schema', null, 'use an SQL identifier'],
      ['consumer.queueType null', withSection('consumer', { queueType: null }), 'consumer.queueType', null, 'use "classic" or "quorum"'],
      ['rabbitmq.exchange null', withSection('rabbitmq', { exchange: null }), 'rabbitmq.exchange', null, 'use 1-200 letters'],
      ['rabbitmq.connectionName null', withSection('rabbitmq', { connectionName: null }), 'rabbitmq.connectionName', null, 'use a non-empty string'],
      ['rabbitmq.socketOptions null', withSection('rabbitmq', { socketOptions: null }), 'rabbitmq.socketOptions', null, 'pass an object'],
      ['dataSourceName null', withTop({ dataSourceName: null }), 'dataSourceName', null, 'give the name of a TypeORM DataSource'],
      ['consumer.retry null', withSection('consumer', { retry: null }), 'consumer.retry', null, 'pass an object of retry options'],
      ['consumer.retry.maxAttempts null', withSection('consumer', { retry: { maxAttempts: null } }), 'consumer.retry.maxAttempts', null, 'use a whole number'],
      ['consumer.retry.retryable null', withSection('consumer', { retry: { retryable: null } }), 'consumer.retry.retryable', null, 'pass a function'],
    ];

    it.each(cases)('%s', (_case, options, field, value, fix) => {
      const error = refusal(options);
      expect(error.field).toBe(field);
      expect(error.value).toStrictEqual(value);
      expect(error.expected).toContain(fix);
      expect(error.message).toContain(`option "${field}"`);
      expect(error.message).toContain(fix);
    });

    it.each([
      ['rabbitmq', 'heartbeatSeconds', 0, 3_600],
      ['rabbitmq', 'reconnectInitialDelayMs', 1, 30_000],
      ['outbox', 'maxPayloadBytes', 64, 1024 * 1024],
      ['relay', 'pollIntervalMs', 10, 3_600_000],
      ['relay', 'batchSize', 1, 10_000],
      ['relay', 'maxUnconfirmed', 1, 100_000],
      ['consumer', 'prefetch', 1, 65_535],
      ['consumer', 'concurrency', 1, 65_535],
      ['consumer', 'maxBodyBytes', 256 * 1024, 128 * 1024 * 1024],
      ['consumer', 'maxDepth', 1, 1_000],
      ['consumer', 'shutdownTimeoutMs', 0, 3_600_000],
      ['consumer', 'ackDelayMs', 0, 1_000],
    ] as const)('accepts %s.%s at both ends of its range (%d, %d)', (section, key, min, max) => {
      for (const value of [min, max]) {
        const resolved = resolveOptions(withSection(section, { [key]: value }));
        expect((resolved[section] as Record<string, unknown>)[key]).toBe(value);
      }
    });
  });

  describe('consumer retries and dead letters', () => {
    it('names the refused retry field under consumer.retry', () => {
      expect(refusal(withSection('consumer', { retry: { maxAttempts: 0 } })).field).toBe('consumer.retry.maxAttempts');
      expect(refusal(withSection('consumer', { retry: { initialDelayMs: 500, maxDelayMs: 100 } })).field).toBe('consumer.retry.maxDelayMs');
      expect(refusal(withSection('consumer', { retry: { jitter: 1.5 } })).field).toBe('consumer.retry.jitter');
      expect(refusal(withSection('consumer', { retry: { retryable: 'yes' } })).field).toBe('consumer.retry.retryable');
      const typo = refusal(withSection('consumer', { retry: { attempts: 3 } }));
      expect(typo.field).toBe('consumer.retry.attempts');
      expect(typo.expected).toContain('the retry options are maxAttempts, initialDelayMs');
    });

    it('refuses an onDeadLetter that is not a function', () => {
      expect(refusal(withSection('consumer', { onDeadLetter: 'log' })).field).toBe('consumer.onDeadLetter');
    });
  });

  describe('transport: rabbitmq or inProcess', () => {
    it('takes an in-process broker instead of RabbitMQ', () => {
      const broker = new InProcessBroker();
      const resolved = resolveOptions({ serviceName: 'ordering', inProcess: { broker } });
      expect(resolved.rabbitmq).toBeUndefined();
      expect(resolved.inProcess).toEqual({ broker, exchange: 'integration-events' });
    });

    it('refuses both at once, and an inProcess.broker that is not an InProcessBroker', () => {
      expect(refusal({ ...MINIMAL, inProcess: { broker: new InProcessBroker() } }).field).toBe('inProcess');
      const error = refusal({ serviceName: 'ordering', inProcess: { broker: {} } });
      expect(error.field).toBe('inProcess.broker');
      expect(error.expected).toContain('new InProcessBroker()');
      // The rule the name broke is said, as for rabbitmq.exchange.
      expect(refusal({ serviceName: 'ordering', inProcess: { broker: new InProcessBroker(), exchange: 'amq.x' } }).expected).toContain('not starting with "amq."');
    });

    it('takes inProcess.maxRetryDelayMs as a whole number of 0 or more, and refuses anything else', () => {
      const broker = new InProcessBroker();
      expect(resolveOptions({ serviceName: 'ordering', inProcess: { broker, maxRetryDelayMs: 50 } }).inProcess?.maxRetryDelayMs).toBe(50);
      expect(resolveOptions({ serviceName: 'ordering', inProcess: { broker } }).inProcess?.maxRetryDelayMs).toBeUndefined();
      for (const bad of [-1, 1.5, '50', null]) {
        const error = refusal({ serviceName: 'ordering', inProcess: { broker, maxRetryDelayMs: bad as number } });
        expect(error.field).toBe('inProcess.maxRetryDelayMs');
      }
    });
  });

  describe('payload and body limits', () => {
    it('accepts the extreme ends of both ranges when they agree', () => {
      expect(
        resolveOptions({ ...MINIMAL, outbox: { maxPayloadBytes: 64 }, consumer: { maxBodyBytes: 1_024 } }).consumer.maxBodyBytes,
      ).toBe(1_024);
      expect(
        resolveOptions({
          ...MINIMAL,
          outbox: { maxPayloadBytes: 128 * 1024 * 1024 },
          consumer: { maxBodyBytes: 128 * 1024 * 1024 },
        }).outbox.maxPayloadBytes,
      ).toBe(128 * 1024 * 1024);
    });

    it("accepts a frameMax in the URL of 131072 or more, or 0 (the broker's limit), as amqplib reads it", () => {
      for (const frameMax of ['131072', '1048576', '0']) {
        const url = `amqp://host?frameMax=${frameMax}`;
        expect(resolveOptions(withSection('rabbitmq', { url })).rabbitmq?.url).toBe(url);
      }
    });

    it('refuses a payload limit above what the consumers accept', () => {
      const error = refusal({ ...MINIMAL, outbox: { maxPayloadBytes: 2_000_000 } });
      expect(error.field).toBe('outbox.maxPayloadBytes');
      expect(error.expected).toContain('consumer.maxBodyBytes (1048576)');
    });
  });

  describe('unknown keys', () => {
    it('refuses an unknown top-level key and lists the known ones', () => {
      const error = refusal(withTop({ relays: { enabled: false } }));
      expect(error.field).toBe('relays');
      expect(error.value).toBe('(unknown option)');
      expect(error.expected).toBe(
        'remove it; the known options here are serviceName, rabbitmq, inProcess, outbox, relay, consumer, inbox, cleanup, ' +
          'cqrs, dataSourceName, transactionConnectionName, isGlobal',
      );
    });

    it('refuses a typo in a section (relay.pollInterval) and names the option meant', () => {
      const error = refusal(withSection('relay', { pollInterval: 500 }));
      expect(error.field).toBe('relay.pollInterval');
      expect(error.value).toBe('(unknown option)');
      expect(error.expected).toContain('remove it; the known options here are enabled, pollIntervalMs, batchSize');
      expect(error.message).toContain('option "relay.pollInterval" (got "(unknown option)")');
    });

    it.each([
      ['rabbitmq', 'password', 'url, socketOptions, exchange'],
      ['outbox', 'tableName', 'schema, table, maxPayloadBytes'],
      ['consumer', 'parallelism', 'enabled, prefetch, concurrency, queueType'],
    ] as const)('refuses %s.%s', (section, key, known) => {
      const error = refusal(withSection(section, { [key]: 1 }));
      expect(error.field).toBe(`${section}.${key}`);
      expect(error.expected).toContain(known);
    });

    it('reports an unknown key before checking the other fields', () => {
      const error = refusal({ serviceName: 'Not Valid', rabbitmq: { url: URL_WITH_PASSWORD, exchang: 'x' } });
      expect(error.field).toBe('rabbitmq.exchang');
    });
  });

  describe('the RabbitMQ password never appears in errors', () => {
    it('redacts the password of a refused rabbitmq.url', () => {
      const error = refusal(withSection('rabbitmq', { url: 'http://guest:s3cret-pw@localhost:5672' }));
      expect(error.field).toBe('rabbitmq.url');
      expect(error.value).toBe('http://guest:***@localhost:5672/');
      expect(error.message).toContain('http://guest:***@localhost:5672/');
      expect(error.message).not.toContain('s3cret-pw');
    });

    it('redacts the password of a refused URL that lacks its amqp:// scheme', () => {
      // Without a scheme, "guest:s3cret-pw@localhost:5672" parses as scheme "guest:" with an opaque path.
      const error = refusal(withSection('rabbitmq', { url: 'guest:s3cret-pw@localhost:5672' }));
      expect(error.field).toBe('rabbitmq.url');
      expect(error.message).not.toContain('s3cret-pw');
      expect(JSON.stringify(error.value)).not.toContain('s3cret-pw');
    });

    it('redacts the password of a refused URL that cannot be parsed', () => {
      const error = refusal(withSection('rabbitmq', { url: 'amqp://guest:s3cret-pw@localhost:99999' }));
      expect(error.value).toBe('amqp://guest:***@localhost:99999');
      expect(error.message).not.toContain('s3cret-pw');
    });

    it('does not leak the password when the URL string is given as the whole rabbitmq option', () => {
      // A plausible slip: `rabbitmq: process.env.RABBITMQ_URL` instead of `rabbitmq: { url: ... }`.
      const error = refusal(withTop({ rabbitmq: URL_WITH_PASSWORD }));
      expect(error.field).toBe('rabbitmq');
      expect(error.message).not.toContain('s3cret-pw');
      expect(JSON.stringify(error.value)).not.toContain('s3cret-pw');
    });

    it('gives a redactedUrl for logs and keeps the real url for connecting', () => {
      const resolved = resolveOptions(withSection('rabbitmq', { url: 'amqps://svc:p%40ss@rabbit:5671/vhost?frameMax=0' }));
      expect(resolved.rabbitmq!.url).toBe('amqps://svc:p%40ss@rabbit:5671/vhost?frameMax=0');
      expect(resolved.rabbitmq!.redactedUrl).toBe('amqps://svc:***@rabbit:5671/vhost?frameMax=0');
    });

    it('leaves a URL without a password as it is', () => {
      const resolved = resolveOptions(withSection('rabbitmq', { url: 'amqp://guest@localhost:5672' }));
      expect(resolved.rabbitmq!.redactedUrl).toBe('amqp://guest@localhost:5672');
    });
  });

  describe('relay lease and confirm timeout', () => {
    it('refuses relay.leaseMs shorter than twice relay.confirmTimeoutMs and says why', () => {
      const error = refusal(withSection('relay', { leaseMs: 19_999, confirmTimeoutMs: 10_000 }));
      expect(error.field).toBe('relay.leaseMs');
      expect(error.value).toBe(19_999);
      expect(error.expected).toBe(
        'make it at least twice relay.confirmTimeoutMs (10000), or a slow batch could outlive its lease and another ' +
          'relay publish its rows again',
      );
    });

    it('refuses relay.leaseMs below relay.confirmTimeoutMs', () => {
      expect(refusal(withSection('relay', { leaseMs: 5_000, confirmTimeoutMs: 6_000 })).field).toBe('relay.leaseMs');
    });

    it('refuses a confirm timeout raised to the default lease', () => {
      const error = refusal(withSection('relay', { confirmTimeoutMs: 30_000 }));
      expect(error.field).toBe('relay.leaseMs');
      expect(error.value).toBe(30_000);
      expect(error.expected).toContain('relay.confirmTimeoutMs (30000)');
    });

    it('accepts a lease of exactly twice the confirm timeout', () => {
      expect(resolveOptions(withSection('relay', { leaseMs: 20_000, confirmTimeoutMs: 10_000 })).relay.leaseMs).toBe(20_000);
    });

    it('accepts isGlobal, the module definition\'s own option, and leaves it out of the resolved options', () => {
      expect(resolveOptions(withTop({ isGlobal: false }))).not.toHaveProperty('isGlobal');
    });
  });

  describe('outbox schema and table are plain SQL identifiers', () => {
    it.each([
      'x; DROP TABLE y',
      'public.outbox',
      '"outbox"',
      '1outbox',
      'outbox-events',
      'outbox events',
      'outbox\n',
      'tablé',
      'a'.repeat(64),
    ])('refuses %j as the schema and as the table', (identifier) => {
      const schemaError = refusal(withSection('outbox', { schema: identifier }));
      expect(schemaError.field).toBe('outbox.schema');
      expect(schemaError.value).toBe(identifier);
      expect(schemaError.expected).toBe('use an SQL identifier: a letter or "_", then letters, digits or "_", at most 63');

      const tableError = refusal(withSection('outbox', { table: identifier }));
      expect(tableError.field).toBe('outbox.table');
      expect(tableError.value).toBe(identifier);
      expect(tableError.expected).toContain('use an SQL identifier');
    });

    it.each(['_outbox', 'Outbox_2', 'o', 'a'.repeat(63)])('accepts %j', (identifier) => {
      const resolved = resolveOptions(withSection('outbox', { schema: identifier, table: identifier }));
      expect(resolved.outbox.schema).toBe(identifier);
      expect(resolved.outbox.table).toBe(identifier);
    });
  });

  describe('the inbox table is not the outbox table', () => {
    const base = { ...withTop({}) };
    it.each([
      ['the same table, no schema', { outbox: { table: 'events' }, inbox: { table: 'events' } }],
      ['the same table in the outbox schema the inbox takes by default', { outbox: { schema: 'sales', table: 'events' }, inbox: { table: 'events' } }],
      ['the same schema and table given twice', { outbox: { schema: 'sales' }, inbox: { schema: 'sales', table: 'integration_events_outbox' } }],
    ])('refuses %s', (_case, sections) => {
      const error = refusal({ ...base, ...sections });
      expect(error.field).toBe('inbox.table');
      expect(error.expected).toBe('name a table of its own: the outbox is in that table (see createInboxMigration)');
    });

    it('accepts a table of the same name in another schema', () => {
      const resolved = resolveOptions({ ...base, outbox: { schema: 'sales', table: 'events' }, inbox: { schema: 'billing', table: 'events' } });
      expect(resolved.inbox).toMatchObject({ schema: 'billing', table: 'events' });
    });
  });

  describe('serviceName', () => {
    it.each(['ordering', 'o', '0rders', 'billing.v2_eu-west', 'a'.repeat(100)])('accepts %j', (serviceName) => {
      expect(resolveOptions({ ...MINIMAL, serviceName }).serviceName).toBe(serviceName);
    });

    it.each(['', 'Ordering', 'order service', '-ordering', '.ordering', '_ordering', 'ordering/api', 'a'.repeat(101)])(
      'refuses %j',
      (serviceName) => {
        const error = refusal({ ...MINIMAL, serviceName });
        expect(error.field).toBe('serviceName');
        expect(error.value).toBe(serviceName);
        expect(error.expected).toBe('use 1-100 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit, e.g. "ordering"');
      },
    );
  });

  describe('rabbitmq.exchange', () => {
    it.each(['amq.topic', 'amq.', 'amq.integration-events'])('refuses %j, in RabbitMQ\'s reserved "amq." namespace', (exchange) => {
      const error = refusal(withSection('rabbitmq', { exchange }));
      expect(error.field).toBe('rabbitmq.exchange');
      expect(error.value).toBe(exchange);
      expect(error.expected).toBe('use 1-200 letters, digits, "-", "_", "." or ":", not starting with "amq."');
    });

    it.each(['amq', 'amqp.events', 'amq-events', 'my.amq.events', 'Company:Events_1', 'e'.repeat(200)])('accepts %j', (exchange) => {
      expect(resolveOptions(withSection('rabbitmq', { exchange })).rabbitmq!.exchange).toBe(exchange);
    });
  });
});
