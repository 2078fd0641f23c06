import { IntegrationEventDefinitionError } from '../errors/integration-event-definition.error';
import { describeOptionValue } from '../util/describe-option-value';
import { INTEGRATION_EVENT_METADATA, type IntegrationEventMetadata } from './integration-event-metadata';

/** Options of `@IntegrationEvent()`. */
export interface IntegrationEventOptions {
  /**
   * The event's stable wire name: the routing key and the outbox's type column. A contract between
   * services, so it is written out here and never derived from the class name. Lower-case words
   * separated by `.`, `-` or `_`, conventionally `<service>.<event>`.
   * @example 'ordering.order-created'
   */
  name: string;
  /**
   * Version of the event's schema. Bump it on a breaking change; consumers refuse versions they do
   * not know (they are dead-lettered, not guessed at).
   * @default 1
   */
  version?: number;
}

/** Letters, digits and single separators: safe as an AMQP topic routing key (no `*` or `#`). */
const EVENT_NAME_PATTERN = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;

/**
 * Marks a class as an integration event and gives it its stable wire name and version.
 *
 * @example
 * ```ts
 * @IntegrationEvent({ name: 'ordering.order-created', version: 1 })
 * export class OrderCreatedIntegrationEvent {
 *   constructor(public readonly orderId: string) {}
 * }
 * ```
 */
export function IntegrationEvent(options: IntegrationEventOptions): ClassDecorator {
  return (target) => {
    const className = target.name;
    // A typo'd key (`verison: 2`) would otherwise send the default version on the wire.
    const unknown = options && typeof options === 'object' ? Object.keys(options).filter((key) => key !== 'name' && key !== 'version') : [];
    if (unknown.length > 0) {
      throw new IntegrationEventDefinitionError(
        className,
        `@IntegrationEvent on ${className}: ${unknown.map((key) => JSON.stringify(key)).join(', ')} is not an option; the options are "name" and "version".`,
      );
    }
    const name = options?.name;
    if (typeof name !== 'string' || name.length > 200 || !EVENT_NAME_PATTERN.test(name)) {
      throw new IntegrationEventDefinitionError(
        className,
        `@IntegrationEvent on ${className}: name ${JSON.stringify(name)} is not a valid event name. Use ` +
          'lower-case letters and digits in words separated by ".", "-" or "_" (at most 200 characters), ' +
          "e.g. 'ordering.order-created'.",
      );
    }
    // Left out: 1. Null is a value, and refused below, as everywhere else in the options.
    const version = options.version === undefined ? 1 : options.version;
    if (!Number.isInteger(version) || version < 1 || version > 1_000_000) {
      throw new IntegrationEventDefinitionError(
        className,
        `@IntegrationEvent on ${className}: version ${describeOptionValue(version)} is not valid. Use a whole number from 1 to 1,000,000.`,
      );
    }
    const existing = Reflect.getOwnMetadata(INTEGRATION_EVENT_METADATA, target) as IntegrationEventMetadata | undefined;
    if (existing) {
      // The metadata keeps one value per class: the second decorator would silently replace the first.
      throw new IntegrationEventDefinitionError(
        className,
        `@IntegrationEvent on ${className}: the class already has one ("${existing.name}" version ${existing.version}). ` +
          'A class is one event: give each name and version a class of its own.',
      );
    }
    const metadata: IntegrationEventMetadata = { name, version };
    Reflect.defineMetadata(INTEGRATION_EVENT_METADATA, metadata, target);
  };
}
