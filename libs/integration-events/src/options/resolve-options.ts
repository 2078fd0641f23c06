import { InvalidIntegrationEventsOptionsError } from '../errors/invalid-options.error';
import { resolveRetryPolicy, RetryPolicyOptionError } from '../retry/resolve-retry-policy';
import type { RetryPolicyOptions } from '../retry/retry-policy-options.interface';
import { InProcessBroker } from '../transport/in-process/in-process-broker';
import { redactUrl } from '../util/redact-url';
import { SQL_IDENTIFIER_PATTERN } from '../outbox/outbox-table-name';
import { DEFAULT_OPTIONS } from './default-options';
import type { IntegrationEventsModuleOptions } from './integration-events-module-options.interface';
import type { ResolvedIntegrationEventsOptions } from './resolved-options';
import { orDefault } from '../util/or-default';

const SERVICE_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,99}$/;
/** AMQP short strings: letters, digits, `-_.:`, and not RabbitMQ's reserved `amq.` prefix. */
const EXCHANGE_PATTERN = /^(?!amq\.)[A-Za-z0-9_.:-]{1,200}$/;

const KNOWN_KEYS = {
  // `isGlobal` belongs to the module definition (ConfigurableModuleBuilder extras), not to the options.
  '': [
    'serviceName',
    'rabbitmq',
    'inProcess',
    'outbox',
    'relay',
    'consumer',
    'inbox',
    'cleanup',
    'cqrs',
    'dataSourceName',
    'transactionConnectionName',
    'isGlobal',
  ],
  rabbitmq: [
    'url',
    'socketOptions',
    'exchange',
    'heartbeatSeconds',
    'reconnectInitialDelayMs',
    'reconnectMaxDelayMs',
    'connectionName',
  ],
  inProcess: ['broker', 'exchange', 'maxRetryDelayMs'],
  outbox: ['schema', 'table', 'maxPayloadBytes', 'retentionMs', 'preparedStatements'],
  inbox: ['enabled', 'schema', 'table', 'retentionMs'],
  cleanup: ['enabled', 'intervalMs', 'batchSize'],
  relay: [
    'enabled',
    'pollIntervalMs',
    'batchSize',
    'leaseMs',
    'confirmTimeoutMs',
    'maxUnconfirmed',
    'retryInitialDelayMs',
    'retryMaxDelayMs',
  ],
  consumer: [
    'enabled',
    'prefetch',
    'concurrency',
    'queueType',
    'maxBodyBytes',
    'maxDepth',
    'shutdownTimeoutMs',
    'ackDelayMs',
    'retry',
    'handlerTimeoutMs',
    'onDeadLetter',
  ],
  cqrs: ['enabled', 'maxDispatchDepth'],
} as const;

/** The options of `forRoot()` at the top level (`serviceName`, `rabbitmq`, `outbox` …). */
export const TOP_LEVEL_OPTION_KEYS: readonly string[] = KNOWN_KEYS[''];

/**
 * Applies the defaults to the module options and validates the result: the one place where options
 * are defaulted and checked. Throws `InvalidIntegrationEventsOptionsError` naming the first bad field.
 * Pure: no I/O, so it runs at `forRoot()` time and again at `app.init()` for `forRootAsync()`.
 */
export function resolveOptions(input: IntegrationEventsModuleOptions): ResolvedIntegrationEventsOptions {
  if (!isRecord(input)) fail('', input, 'pass an options object to IntegrationEventsModule.forRoot()');
  checkKnownKeys('', input);
  const hasRabbitMq = input.rabbitmq !== undefined;
  const hasInProcess = input.inProcess !== undefined;
  if (hasRabbitMq === hasInProcess) {
    fail(
      hasRabbitMq ? 'inProcess' : 'rabbitmq',
      hasRabbitMq ? '(given with rabbitmq)' : undefined,
      hasRabbitMq
        ? 'give either "rabbitmq" or "inProcess", not both'
        : 'give "rabbitmq": { url: "amqp://..." } to use RabbitMQ, or "inProcess": { broker } to run without it',
    );
  }
  const rabbitmqSection = hasRabbitMq ? section(input, 'rabbitmq', true) : undefined;
  const inProcessSection = hasInProcess ? section(input, 'inProcess', true) : undefined;
  const outbox = section(input, 'outbox', false);
  const relay = section(input, 'relay', false);
  const consumer = section(input, 'consumer', false);
  const cqrs = section(input, 'cqrs', false);
  const inbox = section(input, 'inbox', false);
  const cleanup = section(input, 'cleanup', false);

  const serviceName = input.serviceName;
  if (typeof serviceName !== 'string' || !SERVICE_NAME_PATTERN.test(serviceName)) {
    fail('serviceName', serviceName, 'use 1-100 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit, e.g. "ordering"');
  }

  const schema = outbox.schema;
  if (schema !== undefined && (typeof schema !== 'string' || !SQL_IDENTIFIER_PATTERN.test(schema))) {
    fail('outbox.schema', schema, 'use an SQL identifier: a letter or "_", then letters, digits or "_", at most 63');
  }
  const table = orDefault(outbox.table, DEFAULT_OPTIONS.outbox.table);
  if (typeof table !== 'string' || !SQL_IDENTIFIER_PATTERN.test(table)) {
    fail('outbox.table', table, 'use an SQL identifier: a letter or "_", then letters, digits or "_", at most 63');
  }

  const inboxSchema = orDefault(inbox.schema, schema);
  if (inboxSchema !== undefined && (typeof inboxSchema !== 'string' || !SQL_IDENTIFIER_PATTERN.test(inboxSchema))) {
    fail('inbox.schema', inboxSchema, 'use an SQL identifier: a letter or "_", then letters, digits or "_", at most 63');
  }
  const inboxTable = orDefault(inbox.table, DEFAULT_OPTIONS.inbox.table);
  if (typeof inboxTable !== 'string' || !SQL_IDENTIFIER_PATTERN.test(inboxTable)) {
    fail('inbox.table', inboxTable, 'use an SQL identifier: a letter or "_", then letters, digits or "_", at most 63');
  }
  if (inboxTable === table && inboxSchema === schema) {
    fail('inbox.table', inboxTable, 'name a table of its own: the outbox is in that table (see createInboxMigration)');
  }

  const relayResolved = {
    enabled: boolean(relay, 'relay', 'enabled'),
    pollIntervalMs: integer(relay, 'relay', 'pollIntervalMs', 10, 3_600_000),
    batchSize: integer(relay, 'relay', 'batchSize', 1, 10_000),
    leaseMs: integer(relay, 'relay', 'leaseMs', 1_000, 3_600_000),
    confirmTimeoutMs: integer(relay, 'relay', 'confirmTimeoutMs', 100, 600_000),
    maxUnconfirmed: integer(relay, 'relay', 'maxUnconfirmed', 1, 100_000),
    retryInitialDelayMs: integer(relay, 'relay', 'retryInitialDelayMs', 1, 3_600_000),
    retryMaxDelayMs: integer(relay, 'relay', 'retryMaxDelayMs', 1, 86_400_000),
  };
  if (relayResolved.leaseMs < 2 * relayResolved.confirmTimeoutMs) {
    fail(
      'relay.leaseMs',
      relayResolved.leaseMs,
      `make it at least twice relay.confirmTimeoutMs (${relayResolved.confirmTimeoutMs}), or a slow batch ` +
        'could outlive its lease and another relay publish its rows again',
    );
  }
  if (relayResolved.retryMaxDelayMs < relayResolved.retryInitialDelayMs) {
    fail('relay.retryMaxDelayMs', relayResolved.retryMaxDelayMs, 'make it at least relay.retryInitialDelayMs');
  }

  const queueType = orDefault(consumer.queueType, DEFAULT_OPTIONS.consumer.queueType);
  if (queueType !== 'classic' && queueType !== 'quorum') {
    fail('consumer.queueType', queueType, 'use "classic" or "quorum"');
  }
  const maxBodyBytes = integer(consumer, 'consumer', 'maxBodyBytes', 1_024, 128 * 1024 * 1024);
  const maxPayloadBytes = integer(outbox, 'outbox', 'maxPayloadBytes', 64, 128 * 1024 * 1024);
  if (maxPayloadBytes > maxBodyBytes) {
    fail(
      'outbox.maxPayloadBytes',
      maxPayloadBytes,
      `keep it at or below consumer.maxBodyBytes (${maxBodyBytes}), or this service's own consumers refuse what it publishes`,
    );
  }

  const retry = orDefault(consumer.retry, {}) as RetryPolicyOptions;
  try {
    resolveRetryPolicy(retry);
  } catch (error) {
    if (!(error instanceof RetryPolicyOptionError)) throw error;
    fail(`consumer.retry${error.field === '(retry)' ? '' : `.${error.field}`}`, error.value, error.expected);
  }
  const onDeadLetter = consumer.onDeadLetter;
  if (onDeadLetter !== undefined && typeof onDeadLetter !== 'function') {
    fail('consumer.onDeadLetter', onDeadLetter, 'pass a function (deadLetter) => void, or leave it out');
  }

  const dataSourceName = orDefault(input.dataSourceName, DEFAULT_OPTIONS.dataSourceName);
  if (typeof dataSourceName !== 'string' || dataSourceName.length === 0) {
    fail('dataSourceName', dataSourceName, 'give the name of a TypeORM DataSource, or leave it out for "default"');
  }
  const transactionConnectionName = input.transactionConnectionName;
  // nestjs-cls takes '' for its default plugin: a name read from an unset variable would quietly mean that.
  if (transactionConnectionName !== undefined && (typeof transactionConnectionName !== 'string' || transactionConnectionName.length === 0)) {
    fail('transactionConnectionName', transactionConnectionName, 'give the connectionName of ClsPluginTransactional, or leave it out for the default plugin');
  }

  return {
    serviceName,
    rabbitmq: rabbitmqSection ? resolveRabbitMq(rabbitmqSection, serviceName) : undefined,
    inProcess: inProcessSection ? resolveInProcess(inProcessSection) : undefined,
    outbox: {
      schema,
      table,
      maxPayloadBytes,
      retentionMs: integer(outbox, 'outbox', 'retentionMs', 1_000, 3_650 * 86_400_000),
      preparedStatements: boolean(outbox, 'outbox', 'preparedStatements'),
    },
    inbox: {
      enabled: boolean(inbox, 'inbox', 'enabled'),
      schema: inboxSchema,
      table: inboxTable,
      retentionMs: integer(inbox, 'inbox', 'retentionMs', 1_000, 3_650 * 86_400_000),
    },
    cleanup: {
      enabled: boolean(cleanup, 'cleanup', 'enabled'),
      intervalMs: integer(cleanup, 'cleanup', 'intervalMs', 100, 86_400_000),
      batchSize: integer(cleanup, 'cleanup', 'batchSize', 1, 100_000),
    },
    relay: relayResolved,
    consumer: {
      enabled: boolean(consumer, 'consumer', 'enabled'),
      prefetch: integer(consumer, 'consumer', 'prefetch', 1, 65_535),
      concurrency: integer(consumer, 'consumer', 'concurrency', 1, 65_535),
      queueType,
      maxBodyBytes,
      maxDepth: integer(consumer, 'consumer', 'maxDepth', 1, 1_000),
      shutdownTimeoutMs: integer(consumer, 'consumer', 'shutdownTimeoutMs', 0, 3_600_000),
      ackDelayMs: integer(consumer, 'consumer', 'ackDelayMs', 0, 1_000),
      retry,
      handlerTimeoutMs: integer(consumer, 'consumer', 'handlerTimeoutMs', 1, 86_400_000),
      onDeadLetter: onDeadLetter as ResolvedIntegrationEventsOptions['consumer']['onDeadLetter'],
    },
    cqrs: {
      enabled: boolean(cqrs, 'cqrs', 'enabled'),
      maxDispatchDepth: integer(cqrs, 'cqrs', 'maxDispatchDepth', 1, 1_000),
    },
    dataSourceName,
    transactionConnectionName,
  };
}

function resolveRabbitMq(rabbitmq: Section, serviceName: string): NonNullable<ResolvedIntegrationEventsOptions['rabbitmq']> {
  const url = rabbitmq.url;
  if (typeof url !== 'string' || !/^amqps?:\/\//.test(url) || !canParseUrl(url)) {
    fail(
      'rabbitmq.url',
      typeof url === 'string' ? redactUrl(url) : url,
      'give an AMQP URL such as "amqp://user:password@localhost:5672" (or "amqps://" for TLS)',
    );
  }
  // amqplib takes the largest frame from the URL (its default 128 KiB); a message's properties and
  // headers travel in one frame, which a smaller limit would make the broker refuse by closing the
  // connection, for ever for that row or copy.
  const frameMax = new URL(url).searchParams.get('frameMax');
  if (frameMax !== null && !(/^\d+$/.test(frameMax) && (Number(frameMax) === 0 || Number(frameMax) >= MIN_FRAME_MAX))) {
    fail(
      'rabbitmq.url',
      redactUrl(url),
      `give frameMax at least ${MIN_FRAME_MAX} (amqplib's default, asked for when it is left out): a message's headers travel ` +
        'in one frame, and a copy of a message may carry up to 64 KiB of them',
    );
  }
  const socketOptions = orDefault(rabbitmq.socketOptions, {});
  if (!isRecord(socketOptions)) fail('rabbitmq.socketOptions', socketOptions, 'pass an object of amqplib socket options');
  const exchange = orDefault(rabbitmq.exchange, DEFAULT_OPTIONS.rabbitmq.exchange);
  if (typeof exchange !== 'string' || !EXCHANGE_PATTERN.test(exchange)) {
    fail('rabbitmq.exchange', exchange, 'use 1-200 letters, digits, "-", "_", "." or ":", not starting with "amq."');
  }
  const connectionName = orDefault(rabbitmq.connectionName, serviceName);
  if (typeof connectionName !== 'string' || connectionName.length === 0 || connectionName.length > 200) {
    fail('rabbitmq.connectionName', connectionName, 'use a non-empty string of at most 200 characters');
  }
  const reconnectInitialDelayMs = integer(rabbitmq, 'rabbitmq', 'reconnectInitialDelayMs', 1, 600_000);
  const reconnectMaxDelayMs = integer(rabbitmq, 'rabbitmq', 'reconnectMaxDelayMs', 1, 3_600_000);
  if (reconnectMaxDelayMs < reconnectInitialDelayMs) {
    fail('rabbitmq.reconnectMaxDelayMs', reconnectMaxDelayMs, 'make it at least rabbitmq.reconnectInitialDelayMs');
  }
  return {
    url,
    redactedUrl: redactUrl(url),
    socketOptions,
    exchange,
    heartbeatSeconds: integer(rabbitmq, 'rabbitmq', 'heartbeatSeconds', 0, 3_600),
    reconnectInitialDelayMs,
    reconnectMaxDelayMs,
    connectionName,
  };
}

function resolveInProcess(inProcess: Section): NonNullable<ResolvedIntegrationEventsOptions['inProcess']> {
  const broker = inProcess.broker;
  if (!(broker instanceof InProcessBroker)) {
    fail('inProcess.broker', typeof broker, 'pass an InProcessBroker instance (new InProcessBroker()), the same for every service of the process');
  }
  const exchange = orDefault(inProcess.exchange, DEFAULT_OPTIONS.inProcess.exchange);
  if (typeof exchange !== 'string' || !EXCHANGE_PATTERN.test(exchange)) {
    fail('inProcess.exchange', exchange, 'use 1-200 letters, digits, "-", "_", "." or ":", not starting with "amq." (as on RabbitMQ)');
  }
  // No default: left out, a retry waits what its policy says.
  const maxRetryDelayMs = inProcess.maxRetryDelayMs;
  if (maxRetryDelayMs !== undefined && (typeof maxRetryDelayMs !== 'number' || !Number.isInteger(maxRetryDelayMs) || maxRetryDelayMs < 0)) {
    fail('inProcess.maxRetryDelayMs', maxRetryDelayMs, 'use a whole number of milliseconds, 0 or more, or leave it out');
  }
  return { broker, exchange, maxRetryDelayMs };
}

type SectionName = Exclude<keyof typeof KNOWN_KEYS, ''>;
type Section = Record<string, unknown>;

function section(input: Record<string, unknown>, name: SectionName, required: boolean): Section {
  const value = input[name];
  if (value === undefined && !required) return {};
  if (!isRecord(value)) {
    // A URL string given where an object belongs is a common slip; never echo its password.
    const shown = name === 'rabbitmq' && typeof value === 'string' ? redactUrl(value) : value;
    fail(name, shown, required ? `pass a "${name}" object, e.g. { url: "amqp://..." }` : `pass an object or leave "${name}" out`);
  }
  checkKnownKeys(name, value);
  return value;
}

function checkKnownKeys(name: keyof typeof KNOWN_KEYS, value: Record<string, unknown>): void {
  const known: readonly string[] = KNOWN_KEYS[name];
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      const field = name ? `${name}.${key}` : key;
      fail(field, '(unknown option)', `remove it; the known options here are ${known.join(', ')}`);
    }
  }
}

function integer<S extends SectionName>(
  values: Section,
  sectionName: S,
  key: keyof (typeof DEFAULT_OPTIONS)[S] & string,
  min: number,
  max: number,
): number {
  const defaults = DEFAULT_OPTIONS[sectionName] as Record<string, unknown>;
  const value = orDefault(values[key], defaults[key]);
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(`${sectionName}.${key}`, value, `use a whole number from ${min} to ${max}`);
  }
  return value;
}

function boolean<S extends SectionName>(values: Section, sectionName: S, key: keyof (typeof DEFAULT_OPTIONS)[S] & string): boolean {
  const defaults = DEFAULT_OPTIONS[sectionName] as Record<string, unknown>;
  const value = orDefault(values[key], defaults[key]);
  if (typeof value !== 'boolean') fail(`${sectionName}.${key}`, value, 'use true or false');
  return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The smallest frame the library works with: amqplib's and RabbitMQ's default. A message's properties
 * and headers travel in one frame, which amqplib does not hold to the agreed size: it encodes a headers
 * table of up to 64 KiB (a copy of another publisher's message may carry that much; see
 * `smallerCopyHeaders`), plus the other properties and the frame's own bytes.
 */
export const MIN_FRAME_MAX = 131_072;

/** Whether `url` parses and names a host (amqplib takes `amqp://` alone for localhost, unsaid). */
function canParseUrl(url: string): boolean {
  try {
    return new URL(url).hostname !== '';
  } catch {
    return false;
  }
}

function fail(field: string, value: unknown, expected: string): never {
  throw new InvalidIntegrationEventsOptionsError(field || '(options)', value, expected);
}
