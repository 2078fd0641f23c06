/** Options of `@IntegrationEventHandler(Event, options)`. */
export interface IntegrationEventHandlerOptions {
  /**
   * Name of this handler's queue. The default, `<serviceName>.<HandlerClassName>`, changes when the
   * class is renamed, which orphans the old queue and its messages: name it explicitly in production.
   * @default `<serviceName>.<HandlerClassName>`
   */
  queue?: string;

  /**
   * Unacknowledged messages RabbitMQ hands this handler at once.
   * @default the module's `consumer.prefetch`
   */
  prefetch?: number;
}
