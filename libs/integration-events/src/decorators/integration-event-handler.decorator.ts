import { DiscoveryService } from '@nestjs/core';
import { InvalidIntegrationEventHandlerError } from '../errors/invalid-integration-event-handler.error';
import type { IntegrationEventClass } from './integration-event-metadata';
import type { IntegrationEventHandlerOptions } from './integration-event-handler-options.interface';

/** What `@IntegrationEventHandler` records on a handler class. */
export interface IntegrationEventHandlerMetadata {
  readonly event: IntegrationEventClass;
  readonly options: IntegrationEventHandlerOptions;
}

/**
 * The discoverable decorator behind `@IntegrationEventHandler`. Created through Nest's public
 * `DiscoveryService.createDecorator()`, so handlers are found with `discoveryService.getProviders()`
 * and no Nest internals are read.
 */
export const IntegrationEventHandlerDiscovery = DiscoveryService.createDecorator<IntegrationEventHandlerMetadata>();

/**
 * Marks a provider as the handler of one integration event. The class must implement
 * `IIntegrationEventHandler<Event>` and be registered as a provider in any module; it is found at
 * startup and gets its own durable queue, bound to the event's name.
 *
 * @example
 * ```ts
 * @IntegrationEventHandler(OrderCreatedIntegrationEvent, { queue: 'payments.order-created' })
 * export class OrderCreatedIntegrationEventHandler implements IIntegrationEventHandler<OrderCreatedIntegrationEvent> {
 *   constructor(private readonly commandBus: CommandBus) {}
 *   async handle(event: OrderCreatedIntegrationEvent, context: IntegrationEventContext) {
 *     await this.commandBus.execute(new RecordPaymentCommand(event.orderId));
 *   }
 * }
 * ```
 */
export function IntegrationEventHandler(
  event: IntegrationEventClass,
  options: IntegrationEventHandlerOptions = {},
): ClassDecorator {
  return (target) => {
    if (typeof event !== 'function') {
      throw new InvalidIntegrationEventHandlerError(
        target.name,
        `the event given to @IntegrationEventHandler is ${String(event)}, not a class. If it is ` +
          'undefined, the event and the handler import each other: break the circular import.',
      );
    }
    const existing = Reflect.getOwnMetadata(IntegrationEventHandlerDiscovery.KEY, target) as IntegrationEventHandlerMetadata | undefined;
    if (existing) {
      // Nest's metadata keeps one value per class: the second decorator would silently replace the first.
      throw new InvalidIntegrationEventHandlerError(
        target.name,
        `it has two @IntegrationEventHandler decorators (${existing.event.name} and ${event.name}). A class handles ` +
          'one event: write one handler class per event.',
      );
    }
    IntegrationEventHandlerDiscovery({ event, options: { ...options } })(target);
  };
}
