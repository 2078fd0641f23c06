import { DiscoveryService } from '@nestjs/core';
import { InvalidIntegrationEventConverterError } from '../errors/invalid-integration-event-converter.error';

/** What `@IntegrationEventConverter` records on a converter class. */
export interface IntegrationEventConverterMetadata {
  readonly domainEvent: abstract new (...args: never[]) => object;
}

/** The discoverable decorator behind `@IntegrationEventConverter` (Nest's public discovery API). */
export const IntegrationEventConverterDiscovery = DiscoveryService.createDecorator<IntegrationEventConverterMetadata>();

/**
 * Marks a provider as the converter of one domain event class into integration events. Register the
 * class as a provider in one module (in two, boot fails: each instance would convert); it is found at startup. Whenever the domain event is raised in a
 * transaction, `convert()` runs before the commit and its result is published in that transaction.
 */
export function IntegrationEventConverter(domainEvent: abstract new (...args: never[]) => object): ClassDecorator {
  return (target) => {
    if (typeof domainEvent !== 'function') {
      throw new InvalidIntegrationEventConverterError(
        target.name,
        `the domain event given is ${String(domainEvent)}, not a class. If it is undefined, look for a circular import.`,
      );
    }
    const existing = Reflect.getOwnMetadata(IntegrationEventConverterDiscovery.KEY, target) as IntegrationEventConverterMetadata | undefined;
    if (existing) {
      // Nest's metadata keeps one value per class: the second decorator would silently replace the first,
      // and the domain event it named would be converted by nothing.
      throw new InvalidIntegrationEventConverterError(
        target.name,
        `it has two @IntegrationEventConverter decorators (${existing.domainEvent.name} and ${domainEvent.name}). A class ` +
          'converts one domain event class: write one converter class per domain event.',
      );
    }
    IntegrationEventConverterDiscovery({ domainEvent })(target);
  };
}
