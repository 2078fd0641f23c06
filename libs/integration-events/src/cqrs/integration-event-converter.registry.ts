import { Injectable } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { providerClass } from '../discovery/provider-class';
import { findIntegrationEventMetadata } from '../decorators/integration-event-metadata';
import { InvalidIntegrationEventConverterError } from '../errors/invalid-integration-event-converter.error';
import { IntegrationEventConverterDiscovery, type IntegrationEventConverterMetadata } from './integration-event-converter.decorator';
import type { ConverterResult, IIntegrationEventConverter } from './integration-event-converter.interface';

interface DiscoveredConverter {
  readonly name: string;
  readonly instance: IIntegrationEventConverter;
}

/** The `@IntegrationEventConverter` providers of the application, by domain event class. */
@Injectable()
export class IntegrationEventConverterRegistry {
  private readonly byDomainEvent = new Map<Function, DiscoveredConverter[]>();
  /** Each domain event class seen, with the converters that apply to it (see `convertersOf`). */
  private readonly byClassSeen = new Map<Function, readonly DiscoveredConverter[]>();

  constructor(private readonly discovery: DiscoveryService) {}

  /** Finds and checks the converters; a broken one fails boot. */
  explore(): void {
    this.byDomainEvent.clear();
    this.byClassSeen.clear();
    // One instance under two tokens (`useExisting`) is one converter.
    const seen = new Set<unknown>();
    // The converter each decorator's metadata was found on first: the same class provided in two modules
    // (or a decorated class and a subclass of it that inherits its decorator) is two instances, each
    // converting every domain event.
    const nameByMetadata = new Map<object, string>();
    // Every provider, not only those indexed under the decorator's key: that index holds the decorated
    // class itself, so a subclass provided in its place (`useClass`, `overrideProvider()`) would be
    // missed, and its integration events never written. The metadata is read through the prototype chain.
    for (const wrapper of this.discovery.getProviders()) {
      const cls = providerClass(wrapper);
      const metadata = cls
        ? (Reflect.getMetadata(IntegrationEventConverterDiscovery.KEY, cls) as IntegrationEventConverterMetadata | undefined)
        : undefined;
      if (!metadata || (wrapper.instance !== undefined && seen.has(wrapper.instance))) continue;
      seen.add(wrapper.instance);
      const name = cls?.name || String(wrapper.name);
      const first = nameByMetadata.get(metadata);
      if (first !== undefined) {
        throw new InvalidIntegrationEventConverterError(
          name,
          `it is provided twice (${first === name ? 'in two modules' : `also as ${first}`}): ` +
            `each instance would convert every ${metadata.domainEvent.name} and publish its integration events again, ` +
            'under new message ids (which no inbox recognises). Provide it once, in one module.',
        );
      }
      nameByMetadata.set(metadata, name);
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
    return this.convertersOf(domainEvent).length > 0;
  }

  /** Runs every converter of the event's class and collects the integration events they return. */
  async convert(domainEvent: object): Promise<object[]> {
    const converters = this.convertersOf(domainEvent);
    const events: object[] = [];
    const seen = new Set<object>();
    for (const converter of converters) {
      const result: ConverterResult<object> = await converter.instance.convert(domainEvent);
      if (result === undefined || result === null) continue;
      for (const item of Array.isArray(result) ? (result as unknown[]) : [result]) {
        // Said here, naming the converter: publish() would only say "events" was wrong.
        if (typeof item !== 'object' || item === null || !findIntegrationEventMetadata(item.constructor)) {
          throw new InvalidIntegrationEventConverterError(
            converter.name,
            `convert() of a ${domainEvent.constructor.name} returned ${describeResult(item)}, not an integration event: return an ` +
              'instance of an @IntegrationEvent class, an array of them, or undefined.',
          );
        }
        if (seen.has(item)) {
          throw new InvalidIntegrationEventConverterError(
            converter.name,
            `convert() of a ${domainEvent.constructor.name} returned one ${item.constructor.name} object twice (with another converter ` +
              'of it, or in one array): it would go out as two messages under two ids. Return a new instance for each event.',
          );
        }
        seen.add(item);
        events.push(item);
      }
    }
    return events;
  }

  /**
   * The converters of the nearest class in the event's class chain that has any, as `@EventsHandler`s
   * of a base class receive its subclasses' events (cqrs reads the event id through the chain). A
   * subclass with converters of its own gets only those, so no event is converted twice.
   */
  private convertersOf(domainEvent: object): readonly DiscoveredConverter[] {
    const type = domainEvent.constructor;
    if (typeof type !== 'function') return [];
    let converters = this.byClassSeen.get(type);
    if (!converters) {
      converters = [];
      for (let current: unknown = type; typeof current === 'function' && current !== Function.prototype; current = Object.getPrototypeOf(current)) {
        const own = this.byDomainEvent.get(current as Function);
        if (own) {
          converters = own;
          break;
        }
      }
      this.byClassSeen.set(type, converters);
    }
    return converters;
  }

  get size(): number {
    return [...this.byDomainEvent.values()].reduce((total, list) => total + list.length, 0);
  }
}

/** A converter's wrong result, for its error: the value for a primitive, the class for an object. */
function describeResult(value: unknown): string {
  if (value === null || typeof value !== 'object') return typeof value === 'string' ? JSON.stringify(value) : String(value);
  if (value instanceof Promise) return 'a Promise (await it in convert(), or return it whole)';
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name !== 'Object' ? `a ${name} (a class without @IntegrationEvent)` : 'a plain object';
}
