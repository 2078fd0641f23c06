import { Injectable } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { InvalidIntegrationEventConverterError } from '../errors/invalid-integration-event-converter.error';
import { IntegrationEventConverterDiscovery } from './integration-event-converter.decorator';
import type { ConverterResult, IIntegrationEventConverter } from './integration-event-converter.interface';

interface DiscoveredConverter {
  readonly name: string;
  readonly instance: IIntegrationEventConverter;
}

/** The `@IntegrationEventConverter` providers of the application, by domain event class. */
@Injectable()
export class IntegrationEventConverterRegistry {
  private readonly byDomainEvent = new Map<Function, DiscoveredConverter[]>();

  constructor(private readonly discovery: DiscoveryService) {}

  /** Finds and checks the converters; a broken one fails boot. */
  explore(): void {
    this.byDomainEvent.clear();
    for (const wrapper of this.discovery.getProviders({ metadataKey: IntegrationEventConverterDiscovery.KEY })) {
      const metadata = this.discovery.getMetadataByDecorator(IntegrationEventConverterDiscovery, wrapper);
      if (!metadata) continue;
      const name = (wrapper.metatype as { name?: string } | null)?.name ?? String(wrapper.name);
      if (!wrapper.isDependencyTreeStatic() || wrapper.isTransient) {
        throw new InvalidIntegrationEventConverterError(name, 'converters must be singletons (the default scope).');
      }
      const instance = wrapper.instance as Partial<IIntegrationEventConverter> | undefined;
      if (typeof instance?.convert !== 'function') {
        throw new InvalidIntegrationEventConverterError(
          name,
          'the class has no convert(domainEvent) method. Implement IIntegrationEventConverter<DomainEvent, IntegrationEvent>.',
        );
      }
      const list = this.byDomainEvent.get(metadata.domainEvent) ?? [];
      list.push({ name, instance: instance as IIntegrationEventConverter });
      this.byDomainEvent.set(metadata.domainEvent, list);
    }
  }

  /** True when some converter handles this domain event's class. */
  has(domainEvent: object): boolean {
    return this.byDomainEvent.has(domainEvent.constructor);
  }

  /** Runs every converter of the event's class and collects the integration events they return. */
  async convert(domainEvent: object): Promise<object[]> {
    const converters = this.byDomainEvent.get(domainEvent.constructor) ?? [];
    const events: object[] = [];
    for (const converter of converters) {
      const result: ConverterResult<object> = await converter.instance.convert(domainEvent);
      if (result === undefined || result === null) continue;
      if (Array.isArray(result)) events.push(...(result as object[]));
      else events.push(result as object);
    }
    return events;
  }

  get size(): number {
    return [...this.byDomainEvent.values()].reduce((total, list) => total + list.length, 0);
  }
}
