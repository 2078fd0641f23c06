import type { DeadLetter } from '../dead-letter/dead-letter.interface';
import type { InProcessBroker } from '../transport/in-process/in-process-broker';
import type { RetryPolicyOptions } from '../retry/retry-policy-options.interface';

/** Options of `IntegrationEventsModule.forRoot()` / `forRootAsync()`. */
export interface IntegrationEventsModuleOptions {
  /**
   * Name of this service. Sent as the `ie-source-service` header and used as the prefix of every
   * handler queue (`<serviceName>.<HandlerClassName>`). Lower-case letters, digits, `.`, `_`, `-`.
   * Required.
   * @example 'ordering'
   */
  serviceName: string;

  /** How to reach RabbitMQ and how to name what is declared there. Give this or `inProcess`. */
  rabbitmq?: RabbitMqOptions;

  /**
   * Run without RabbitMQ, on an in-process broker shared by the services of this process (development,
   * demos, tests). Give this or `rabbitmq`.
   */
  inProcess?: InProcessOptions;

  /** Where the outbox table lives. */
  outbox?: OutboxOptions;

  /** The relay that moves committed outbox rows to the broker. */
  relay?: RelayOptions;

  /** The consumers that deliver messages to `@IntegrationEventHandler` classes. */
  consumer?: ConsumerOptions;

  /** The inbox that makes handlers' database effects happen once per message. */
  inbox?: InboxOptions;

  /** Periodic deletion of old sent outbox rows and old inbox rows. */
  cleanup?: CleanupOptions;

  /** The @nestjs/cqrs bridge: domain events handled inside their transaction. */
  cqrs?: CqrsBridgeOptions;

  /**
   * Name of the TypeORM DataSource holding the outbox (as given to `TypeOrmModule.forRoot({ name })`).
   * @default 'default'
   */
  dataSourceName?: string;

  /**
   * `connectionName` of the `ClsPluginTransactional` whose transactions `publish()` joins.
   * @default undefined (the plugin registered without a connection name)
   */
  transactionConnectionName?: string;
}

/** RabbitMQ connection and naming. */
export interface RabbitMqOptions {
  /**
   * AMQP URL (`amqp://user:pass@host:5672/vhost`, or `amqps://` for TLS). Required.
   * The password never appears in logs or errors.
   */
  url: string;

  /**
   * Extra socket options passed to amqplib's `connect()` (TLS `ca`, `cert`, `key`, `servername`, ...).
   * @default {}
   */
  socketOptions?: Record<string, unknown>;

  /**
   * Durable topic exchange all integration events are published to; every service of a system
   * must use the same one.
   * @default 'integration-events'
   */
  exchange?: string;

  /**
   * AMQP heartbeat in seconds; a dead connection is noticed within about twice this.
   * @default 10
   */
  heartbeatSeconds?: number;

  /**
   * Delay before the first reconnect attempt, in ms; later attempts back off exponentially.
   * @default 500
   */
  reconnectInitialDelayMs?: number;

  /**
   * Upper bound of the reconnect delay, in ms.
   * @default 30000
   */
  reconnectMaxDelayMs?: number;

  /**
   * Name shown for this service's connections in the RabbitMQ management UI, followed by ` (consuming)`
   * or ` (publishing)`. @default `<serviceName>`
   */
  connectionName?: string;
}

/** The in-process transport. */
export interface InProcessOptions {
  /** The broker; pass the same instance to every service of the process. Required. */
  broker: InProcessBroker;
  /**
   * Name of the exchange inside the broker; services talking to each other use the same one.
   * @default 'integration-events'
   */
  exchange?: string;
  /**
   * The longest a retry copy waits in the broker before its next attempt, whatever the handler's retry
   * policy says (the attempts and their headers still follow the policy): a short value makes tests of
   * failing handlers fast. The testing module sets 50.
   * @default undefined (the policy's delay)
   */
  maxRetryDelayMs?: number;
}

/** Where the outbox table lives. Both names are validated as SQL identifiers, never concatenated raw. */
export interface OutboxOptions {
  /**
   * Schema of the outbox table. `undefined` uses the connection's search path (usually `public`).
   * @default undefined
   */
  schema?: string;

  /**
   * Name of the outbox table. Must match the migration you run (see `createOutboxMigration()`).
   * @default 'integration_events_outbox'
   */
  table?: string;

  /**
   * How long sent rows are kept before the cleanup deletes them, in ms. Rows not yet sent are never
   * deleted.
   * @default 86400000 (1 day)
   */
  retentionMs?: number;

  /**
   * Largest JSON body `publish()` accepts, in bytes. A bigger event is refused before anything is
   * written. Keep it at or below the consumers' `consumer.maxBodyBytes`.
   * @default 262144 (256 KiB)
   */
  maxPayloadBytes?: number;

  /**
   * Run the library's frequent SQL on PostgreSQL (the outbox insert, the relay's claim and marks, the
   * inbox record) as named prepared statements: parsed and planned once per connection. Turn off behind
   * a connection pooler that cannot keep prepared statements (PgBouncer before 1.21 in transaction
   * mode). No effect on SQLite.
   * @default true
   */
  preparedStatements?: boolean;
}

/** The outbox relay. */
export interface RelayOptions {
  /**
   * Run the relay in this process. Turn off in processes that only consume.
   * @default true
   */
  enabled?: boolean;

  /**
   * How often the relay looks for rows committed by other processes, in ms. Rows committed through
   * this process wake it at once and do not wait for the poll.
   * @default 1000
   */
  pollIntervalMs?: number;

  /**
   * Rows claimed (or handed-over rows published) per round. Up to 10 batches of rows written in this
   * process (waiting for the relay in memory, or leased to transactions still open) go to the relay
   * directly; past that, rows are written for a claim instead.
   * @default 200
   */
  batchSize?: number;

  /**
   * How long a claimed row is reserved for this relay, in ms, and a row written in this process for its
   * relay (the handoff) from its insert. If the process dies first, another relay takes the row over
   * after this. At least twice `confirmTimeoutMs`. A published row whose mark fails (the database away)
   * has its mark tried again with later marks until half of this has passed since the first failure.
   * @default 30000
   */
  leaseMs?: number;

  /**
   * How long one batch may take to be published and confirmed, in ms (window waits and socket
   * back-pressure included); a row not confirmed by then counts as failed and is tried again. Also how
   * long a consumer waits for the confirm of a retry or dead-letter copy (the message then goes back to
   * its queue), and a dead-letter requeue for each copy's.
   * @default 10000
   */
  confirmTimeoutMs?: number;

  /**
   * Largest number of published messages waiting for their confirm at once (the confirm window).
   * @default 1000
   */
  maxUnconfirmed?: number;

  /**
   * Delay before the first retry of a row whose publish failed (nack, timeout, channel closed), in ms.
   * Doubles on each further failure of that row; each delay is drawn between half this step and the
   * whole step, so rows that failed together spread out.
   * @default 1000
   */
  retryInitialDelayMs?: number;

  /**
   * Upper bound of that retry delay, in ms.
   * @default 60000
   */
  retryMaxDelayMs?: number;
}

/** Consumers of this service's handler queues. */
export interface ConsumerOptions {
  /**
   * Start consumers for the discovered handlers. Turn off in processes that only publish.
   * @default true
   */
  enabled?: boolean;

  /**
   * Unacknowledged messages RabbitMQ hands each handler's consumer at once (per process): those beyond
   * `concurrency` wait in the process for a free slot, so the next message is already there when a call
   * ends. Overridable per handler.
   * @default 50
   */
  prefetch?: number;

  /**
   * Calls of one handler running at once (per process), at most `prefetch`. With the inbox each call
   * holds a database connection: keep it below the size of the connection pool. Overridable per handler.
   * @default 10
   */
  concurrency?: number;

  /**
   * Type of the handler queues. `quorum` is replicated and is the choice for a RabbitMQ cluster;
   * `classic` suits a single node. Changing it for an existing queue needs the queue deleted first
   * (RabbitMQ refuses to redeclare a queue with other arguments).
   * @default 'classic'
   */
  queueType?: QueueType;

  /**
   * Largest message body accepted, in bytes; a bigger one is rejected unread.
   * @default 1048576 (1 MiB)
   */
  maxBodyBytes?: number;

  /**
   * Deepest nesting of objects and arrays accepted in a message body; deeper ones are rejected
   * before parsing.
   * @default 64
   */
  maxDepth?: number;

  /**
   * How long shutdown waits for in-flight handlers after their `signal` fired, in ms. Messages
   * whose handler has not finished by then are left unacknowledged and redelivered.
   * @default 10000
   */
  shutdownTimeoutMs?: number;

  /**
   * The longest the ack of a handled message waits for others, in ms, so that the acks of several
   * messages leave as one frame (with `multiple`): when messages arrive one at a time, each would
   * otherwise cost the consumer and the broker a frame of its own. 0: the acks of one turn of the event
   * loop leave at its end. Once enough acks wait that the calls could run short of deliveries (half the
   * prefetch, or what the prefetch leaves beyond `concurrency` if less), they leave at the end of the
   * turn. A process that dies within the window has those messages delivered again, as for one dying
   * just before its ack: with the inbox they are skipped, without it handled again.
   * @default 5
   */
  ackDelayMs?: number;

  /**
   * How failing handlers are retried (attempts, backoff, which errors). Per handler with
   * `@IntegrationEventHandler(Event, { retry })`.
   * @default { maxAttempts: 10, initialDelayMs: 1000, multiplier: 2, maxDelayMs: 300000, jitter: 0.2 }
   */
  retry?: RetryPolicyOptions;

  /**
   * How long a handler call may take, in ms, before it counts as a failed attempt (its `signal` is
   * aborted with a `HandlerTimeoutError`). Keep it well under RabbitMQ's `consumer_timeout` (30 min by
   * default), which closes the channel of a consumer that holds a message too long. Per handler with
   * `@IntegrationEventHandler(Event, { timeoutMs })`.
   * @default 60000
   */
  handlerTimeoutMs?: number;

  /**
   * Called after a message has been moved to a dead-letter queue (its copy confirmed by the broker), with
   * what is known about it: alert, count, log. Errors it throws are logged and otherwise ignored.
   * @default undefined
   */
  onDeadLetter?: (deadLetter: DeadLetter) => void | Promise<void>;
}

/** The inbox (idempotent consumption). */
export interface InboxOptions {
  /**
   * Run each handler call in a transaction that also records `(handler, message id)` in the inbox, and
   * skip deliveries already recorded. Per handler with `@IntegrationEventHandler(Event, { inbox: false })`
   * for handlers that touch no database.
   * @default true
   */
  enabled?: boolean;

  /**
   * Schema of the inbox table.
   * @default the outbox's schema
   */
  schema?: string;

  /**
   * Name of the inbox table. Must match the migration you run (see `createInboxMigration()`).
   * @default 'integration_events_inbox'
   */
  table?: string;

  /**
   * How long a handled message is remembered, in ms. A duplicate that arrives later than this is handled
   * again, so keep it longer than any duplicate can be late: redeliveries come within minutes, relay
   * re-publishes within `relay.leaseMs`. A record is dated when its call starts. Boot fails for a handler
   * using the inbox when this is less than twice its `timeoutMs` (the call and its commit) plus twice the
   * larger of `relay.leaseMs` and its longest retry delay. Dead-letter replays are not
   * duplicates (a dead-lettered message was never recorded: its failed attempts rolled back).
   * @default 604800000 (7 days)
   */
  retentionMs?: number;
}

/** Periodic deletion of old rows (sent outbox rows, inbox rows), in small batches. */
export interface CleanupOptions {
  /**
   * Run the cleanup in this process (every instance may; batches never collide).
   * @default true
   */
  enabled?: boolean;

  /**
   * How often the cleanup runs, in ms.
   * @default 60000
   */
  intervalMs?: number;

  /**
   * Rows deleted per statement; a run deletes batch after batch until nothing old is left.
   * @default 1000
   */
  batchSize?: number;
}

/** The @nestjs/cqrs bridge. */
export interface CqrsBridgeOptions {
  /**
   * Dispatch domain events published inside a transaction to their `@EventsHandler` handlers and
   * `@IntegrationEventConverter`s before the commit, awaited. Only has an effect when `CqrsModule` is
   * imported.
   * @default true
   */
  enabled?: boolean;

  /**
   * How many rounds of "handlers raised more domain events" one transaction may go through before the
   * dispatch is deemed a cycle and the transaction rolled back.
   * @default 10
   */
  maxDispatchDepth?: number;
}

export type QueueType = 'classic' | 'quorum';
