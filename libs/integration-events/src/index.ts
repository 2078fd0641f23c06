export { IntegrationEventsModule } from './integration-events.module';
export type { IntegrationEventsModuleAsyncOptions } from './integration-events.module-definition';
export type {
  IntegrationEventsModuleOptions,
  RabbitMqOptions,
  OutboxOptions,
  RelayOptions,
  ConsumerOptions,
  CqrsBridgeOptions,
  InboxOptions,
  CleanupOptions,
  QueueType,
} from './options/integration-events-module-options.interface';
export type { ResolvedIntegrationEventsOptions } from './options/resolved-options';
export { resolveOptions } from './options/resolve-options';
export { DEFAULT_OPTIONS } from './options/default-options';

export { IntegrationEvent, type IntegrationEventOptions } from './decorators/integration-event.decorator';
export { IntegrationEventHandler } from './decorators/integration-event-handler.decorator';
export type { IntegrationEventHandlerOptions } from './decorators/integration-event-handler-options.interface';
export {
  getIntegrationEventMetadata,
  type IntegrationEventClass,
  type IntegrationEventMetadata,
} from './decorators/integration-event-metadata';

export type { IIntegrationEventHandler } from './consumer/integration-event-handler.interface';
export type { IntegrationEventContext } from './consumer/integration-event-context.interface';
export { IntegrationEventConsumers, type HandlerQueues } from './consumer/integration-event-consumers';
export type { RetryPolicyOptions } from './retry/retry-policy-options.interface';
export { DEFAULT_RETRY_POLICY } from './retry/retry-policy';
export type { DeadLetter, DeadLetterReason } from './dead-letter/dead-letter.interface';
export { DeadLetterService } from './dead-letter/dead-letter.service';
export type { DeadLetterDetails, DeadLetterSelection, DeadLetterSummary } from './dead-letter/dead-letter-queue.operations';
export { OutboxAdminService } from './outbox/outbox-admin.service';
export { TransactionTurns } from './outbox/transaction-turns';
export type { OutboxFilter, OutboxRowSummary, OutboxSelection } from './outbox/outbox.operations';

export { IntegrationEventPublisher } from './publisher/integration-event.publisher';
export type { PublishOptions } from './publisher/publish-options.interface';
export { OutboxRelay } from './relay/outbox.relay';
export { createOutboxMigration, type OutboxMigrationOptions } from './outbox/migrations/create-outbox-migration';
export { createInboxMigration, type InboxMigrationOptions } from './inbox/create-inbox-migration';
export { CleanupWorker } from './retention/cleanup.worker';

export { IntegrationEventConverter } from './cqrs/integration-event-converter.decorator';
export type { IIntegrationEventConverter, ConverterResult } from './cqrs/integration-event-converter.interface';

export { InProcessBroker } from './transport/in-process/in-process-broker';
export { IntegrationEventsHealth, type IntegrationEventsHealthReport } from './health/integration-events.health';
export { TelemetryAttributes } from './telemetry/telemetry-attributes';
export { HANDLER_DURATION_BUCKETS_S } from './telemetry/integration-events.metrics';
export type { InProcessMessage } from './transport/in-process/in-process-message';
export type { IntegrationEventTransport, DeadLetterOperations } from './transport/integration-event-transport';
export type { InProcessOptions } from './options/integration-events-module-options.interface';

export { MessageHeaders, MESSAGE_CONTENT_TYPE } from './envelope/message-headers';
export type { HeaderValue, MessageHeadersRecord } from './envelope/outgoing-message';

export { IntegrationEventsError } from './errors/integration-events.error';
export { InvalidIntegrationEventsOptionsError } from './errors/invalid-options.error';
export { IntegrationEventDefinitionError } from './errors/integration-event-definition.error';
export { IntegrationEventSerializationError } from './errors/integration-event-serialization.error';
export { NoActiveTransactionError } from './errors/no-active-transaction.error';
export { InvalidPublishOptionsError } from './errors/invalid-publish-options.error';
export { InvalidIntegrationEventHandlerError } from './errors/invalid-integration-event-handler.error';
export { DuplicateHandlerQueueError } from './errors/duplicate-handler-queue.error';
export { OutboxTableMissingError } from './errors/outbox-table-missing.error';
export { InboxTableMissingError } from './errors/inbox-table-missing.error';
export { TableShapeMismatchError } from './errors/table-shape-mismatch.error';
export { TransactionsNotConfiguredError } from './errors/transactions-not-configured.error';
export { UnsupportedDatabaseError } from './errors/unsupported-database.error';
export { BrokerConnectionError } from './errors/broker-connection.error';
export { DomainEventDispatchDepthError } from './errors/domain-event-dispatch-depth.error';
export { DomainEventOutsideTransactionError } from './errors/domain-event-outside-transaction.error';
export { InvalidIntegrationEventConverterError } from './errors/invalid-integration-event-converter.error';
export { NonRetryableError } from './errors/non-retryable.error';
export { HandlerTimeoutError } from './errors/handler-timeout.error';
export { TransportNotReadyError } from './errors/transport-not-ready.error';
export { TransactionAbortedError } from './errors/transaction-aborted.error';
export { TransactionRollingBackError } from './errors/transaction-rolling-back.error';
export { RequeueInterruptedError } from './errors/requeue-interrupted.error';
export { OutboxChangeInterruptedError } from './errors/outbox-change-interrupted.error';
