import 'reflect-metadata';
import { IntegrationEventDefinitionError } from '../errors/integration-event-definition.error';

/** Reflect-metadata key under which `@IntegrationEvent` stores its options. */
export const INTEGRATION_EVENT_METADATA = 'nestjs-integration-events:event';

/** What `@IntegrationEvent` records on a class. */
export interface IntegrationEventMetadata {
  readonly name: string;
  readonly version: number;
}

/** A class that can be instantiated with no arguments (how events are rebuilt from JSON). */
export type IntegrationEventClass<T extends object = object> = abstract new (...args: never[]) => T;

/** The metadata of an event class, or `undefined` when the class is not decorated. */
export function findIntegrationEventMetadata(eventClass: unknown): IntegrationEventMetadata | undefined {
  if (typeof eventClass !== 'function') return undefined;
  // getOwnMetadata: a subclass of an event is a different event and must carry its own name.
  return Reflect.getOwnMetadata(INTEGRATION_EVENT_METADATA, eventClass) as IntegrationEventMetadata | undefined;
}

/** The metadata of an event class; throws a clear error when it is missing. */
export function getIntegrationEventMetadata(eventClass: unknown): IntegrationEventMetadata {
  const metadata = findIntegrationEventMetadata(eventClass);
  if (metadata) return metadata;
  const name = typeof eventClass === 'function' ? eventClass.name || '(anonymous class)' : typeof eventClass;
  throw new IntegrationEventDefinitionError(
    name,
    typeof eventClass === 'function'
      ? `${name} is not an integration event: add @IntegrationEvent({ name: '<service>.<event>', version: 1 }) to the class.`
      : `Expected an integration event class, got ${name}. If it is undefined, look for a circular import.`,
  );
}
