/**
 * The module's option defaults, in one place (the retry policy's are `DEFAULT_RETRY_POLICY`). The JSDoc
 * `@default` of each option in `IntegrationEventsModuleOptions` repeats these values; keep the two in step.
 */
export const DEFAULT_OPTIONS = {
  rabbitmq: {
    exchange: 'integration-events',
    heartbeatSeconds: 10,
    reconnectInitialDelayMs: 500,
    reconnectMaxDelayMs: 30_000,
  },
  inProcess: {
    exchange: 'integration-events',
  },
  outbox: {
    table: 'integration_events_outbox',
    maxPayloadBytes: 256 * 1024,
    retentionMs: 86_400_000,
    preparedStatements: true,
  },
  inbox: {
    enabled: true,
    table: 'integration_events_inbox',
    retentionMs: 7 * 86_400_000,
  },
  cleanup: {
    enabled: true,
    intervalMs: 60_000,
    batchSize: 1_000,
  },
  relay: {
    enabled: true,
    pollIntervalMs: 1_000,
    batchSize: 200,
    leaseMs: 30_000,
    confirmTimeoutMs: 10_000,
    maxUnconfirmed: 1_000,
    retryInitialDelayMs: 1_000,
    retryMaxDelayMs: 60_000,
  },
  consumer: {
    enabled: true,
    prefetch: 50,
    concurrency: 10,
    queueType: 'classic',
    maxBodyBytes: 1024 * 1024,
    maxDepth: 64,
    shutdownTimeoutMs: 10_000,
    ackDelayMs: 5,
    handlerTimeoutMs: 60_000,
  },
  cqrs: {
    enabled: true,
    maxDispatchDepth: 10,
  },
  dataSourceName: 'default',
} as const;
