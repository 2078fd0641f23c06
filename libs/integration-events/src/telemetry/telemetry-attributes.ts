/**
 * Span and metric attribute names. The `messaging.*` ones follow OpenTelemetry's messaging semantic
 * conventions; the `integration_events.*` ones are this library's own.
 */
export const TelemetryAttributes = {
  MessagingSystem: 'messaging.system',
  MessagingOperationType: 'messaging.operation.type',
  MessagingOperationName: 'messaging.operation.name',
  MessagingDestinationName: 'messaging.destination.name',
  MessagingMessageId: 'messaging.message.id',
  MessagingConversationId: 'messaging.message.conversation_id',
  MessagingRoutingKey: 'messaging.rabbitmq.destination.routing_key',
  MessagingConsumerGroup: 'messaging.consumer.group.name',
  EventName: 'integration_events.event.name',
  EventVersion: 'integration_events.event.version',
  Handler: 'integration_events.handler',
  Attempt: 'integration_events.attempt',
  Outcome: 'integration_events.outcome',
  Reason: 'integration_events.reason',
} as const;

/** Name under which the library's tracer and meter are registered. */
export const INSTRUMENTATION_NAME = 'nestjs-integration-events';
