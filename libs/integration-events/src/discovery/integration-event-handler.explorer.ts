import { Injectable } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { IntegrationEventHandlerDiscovery, type IntegrationEventHandlerMetadata } from '../decorators/integration-event-handler.decorator';
import { findIntegrationEventMetadata } from '../decorators/integration-event-metadata';
import { DuplicateHandlerQueueError } from '../errors/duplicate-handler-queue.error';
import { InvalidIntegrationEventHandlerError } from '../errors/invalid-integration-event-handler.error';
import type { IntegrationEventHandlerOptions } from '../decorators/integration-event-handler-options.interface';
import { IntegrationEventsConfig } from '../options/integration-events.config';
import { orDefault } from '../util/or-default';
import { resolveRetryPolicy, RetryPolicyOptionError } from '../retry/resolve-retry-policy';
import type { RetryPolicy } from '../retry/retry-policy';
import type { IIntegrationEventHandler } from '../consumer/integration-event-handler.interface';
import type { DiscoveredHandler } from './discovered-handler';
import { providerClass } from './provider-class';
import { waitQueueName } from '../transport/rabbitmq/handler-topology';
import { describeOptionValue } from '../util/describe-option-value';

/** AMQP queue names: letters, digits, `-_.:`, and not RabbitMQ's reserved `amq.` prefix. */
const QUEUE_PATTERN = /^(?!amq\.)[A-Za-z0-9_.:-]{1,200}$/;

/**
 * Finds every `@IntegrationEventHandler` provider through Nest's public `DiscoveryService` and checks
 * it can work: a `handle()` method, a decorated event class, a valid and unique queue, a singleton
 * scope. Any problem fails boot with an error naming the handler.
 */
@Injectable()
export class IntegrationEventHandlerExplorer {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly config: IntegrationEventsConfig,
  ) {}

  explore(): DiscoveredHandler[] {
    const { serviceName, consumer, inbox: inboxOptions, relay, inProcess } = this.config.options;
    const byQueue = new Map<string, DiscoveredHandler>();
    // One instance under two tokens (`useExisting`) is one handler.
    const seen = new Set<unknown>();
    // The class each decorator's metadata was found on: a subclass that is not decorated itself shares
    // its ancestor's (see the check below).
    const classByMetadata = new Map<IntegrationEventHandlerMetadata, Function>();
    // For `replaces`: each handler under its class (and the decorated class a subclass stands in for),
    // and the handlers that name one.
    const byClass = new Map<Function, DiscoveredHandler>();
    const replacing: Array<{ handler: DiscoveredHandler; replaces: unknown }> = [];
    // The name each handler class was first taken under: the same class again, as another instance under
    // another name, would be a second consumer of the event on a queue of its own.
    const nameByClass = new Map<Function, string>();
    // One instance under two tokens, one of them a decorated class it stands in for: it is that handler,
    // whichever of its tokens comes first.
    const placeOf = new Map<unknown, Function>();
    for (const wrapper of this.discovery.getProviders()) {
      const cls = providerClass(wrapper);
      const inPlaceOf = cls && wrapper.instance !== undefined ? standsInFor(wrapper.token, cls) : undefined;
      if (inPlaceOf) placeOf.set(wrapper.instance, inPlaceOf);
    }

    // Every provider, not only those indexed under the decorator's key: that index holds the decorated
    // class itself, so a subclass provided in its place (`useClass`, `overrideProvider()`) would be missed.
    // The metadata is read through the prototype chain.
    for (const wrapper of this.discovery.getProviders()) {
      const cls = providerClass(wrapper);
      if (!cls) continue;
      const metadata = Reflect.getMetadata(IntegrationEventHandlerDiscovery.KEY, cls) as IntegrationEventHandlerMetadata | undefined;
      if (!metadata || (wrapper.instance !== undefined && seen.has(wrapper.instance))) continue;
      seen.add(wrapper.instance);
      const ownsMetadata = (candidate: Function) => Reflect.getOwnMetadata(IntegrationEventHandlerDiscovery.KEY, candidate) === metadata;
      // A subclass provided in the decorated class's place (`{ provide: OrderCreatedHandler, useClass:
      // TracedOrderCreatedHandler }`, `overrideProvider()`) is that handler under its name: its default
      // queue (and inbox key) stay the same, not a new queue while the old one fills up unread.
      const inPlaceOf = standsInFor(wrapper.token, cls) ?? (wrapper.instance !== undefined ? placeOf.get(wrapper.instance) : undefined);
      const name = inPlaceOf?.name || cls.name || String(wrapper.name);
      const sharing = classByMetadata.get(metadata);
      // A decorated class and a subclass of it that is not decorated itself, both providers, would both
      // consume; two undecorated subclasses of a decorated base that is not provided are two handlers.
      // (The same class provided twice under one name is two instances on one queue: refused below, as a
      // duplicate queue; under two names, as itself and in a decorated class's place, just below.)
      const earlierName = nameByClass.get(cls);
      if (earlierName !== undefined && earlierName !== name) {
        throw new InvalidIntegrationEventHandlerError(
          name,
          `${cls.name} is provided twice, as two instances named ${earlierName} and ${name} (in place of the ` +
            `decorated class it extends: useClass where useExisting was meant?): both would consume ` +
            `${metadata.event.name}, each on a queue of its own. Provide it once, or alias it with useExisting.`,
        );
      }
      nameByClass.set(cls, name);
      if (sharing !== undefined && sharing !== cls && (ownsMetadata(sharing) || ownsMetadata(cls))) {
        throw new InvalidIntegrationEventHandlerError(
          name,
          `it and ${sharing.name} are both providers and carry one @IntegrationEventHandler (a subclass inherits ` +
            `it): both would consume ${metadata.event.name}. Provide only one of them (a subclass in the handler's ` +
            'place: useClass or overrideProvider), or give the subclass an @IntegrationEventHandler of its own.',
        );
      }
      classByMetadata.set(metadata, cls);
      if (!wrapper.isDependencyTreeStatic() || wrapper.isTransient) {
        throw new InvalidIntegrationEventHandlerError(
          name,
          'handlers must be singletons (the default scope); request- and transient-scoped handlers, or ' +
            'handlers that depend on request-scoped providers, are not supported.',
        );
      }
      const instance = wrapper.instance as Partial<IIntegrationEventHandler> | undefined;
      if (typeof instance?.handle !== 'function') {
        throw new InvalidIntegrationEventHandlerError(
          name,
          'the class has no handle(event, context) method. Implement IIntegrationEventHandler<Event>.',
        );
      }
      const event = findIntegrationEventMetadata(metadata.event);
      if (!event) {
        throw new InvalidIntegrationEventHandlerError(
          name,
          `its event class ${metadata.event.name} has no @IntegrationEvent decorator. Add ` +
            "@IntegrationEvent({ name: '<service>.<event>', version: 1 }) to it.",
        );
      }
      const options = checkedHandlerOptions(name, metadata.options);
      const queue = orDefault(options.queue, `${serviceName}.${name}`);
      if (typeof queue !== 'string' || !QUEUE_PATTERN.test(queue)) {
        throw new InvalidIntegrationEventHandlerError(
          name,
          `queue ${JSON.stringify(queue)} is not a valid queue name: use 1-200 letters, digits, "-", "_", "." or ":", ` +
            'not starting with "amq.".',
        );
      }
      const prefetch = orDefault(options.prefetch, consumer.prefetch);
      if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 65_535) {
        throw new InvalidIntegrationEventHandlerError(name, `prefetch ${describeOptionValue(prefetch)} is not a whole number from 1 to 65535.`);
      }
      const concurrency = orDefault(options.concurrency, consumer.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 65_535) {
        throw new InvalidIntegrationEventHandlerError(name, `concurrency ${describeOptionValue(concurrency)} is not a whole number from 1 to 65535.`);
      }
      const deadLetterQueue = orDefault(options.deadLetterQueue, `${queue}.dlq`);
      if (options.deadLetterQueue === undefined && !QUEUE_PATTERN.test(deadLetterQueue)) {
        throw new InvalidIntegrationEventHandlerError(
          name,
          `its dead-letter queue's default name, the queue's with ".dlq" (${JSON.stringify(deadLetterQueue)}), is longer than ` +
            '200 characters: give it a shorter queue, or a deadLetterQueue of its own.',
        );
      }
      if (typeof deadLetterQueue !== 'string' || !QUEUE_PATTERN.test(deadLetterQueue) || deadLetterQueue === queue) {
        throw new InvalidIntegrationEventHandlerError(
          name,
          `deadLetterQueue ${JSON.stringify(deadLetterQueue)} is not a valid queue name, or is the handler's own queue.`,
        );
      }
      let retryPolicy: RetryPolicy;
      try {
        retryPolicy = resolveRetryPolicy(consumer.retry, options.retry);
      } catch (error) {
        if (!(error instanceof RetryPolicyOptionError)) throw error;
        throw new InvalidIntegrationEventHandlerError(name, `${error.field === '(retry)' ? 'retry' : `retry.${error.field}`} ${describeOptionValue(error.value)}: ${error.expected}.`);
      }
      const timeoutMs = orDefault(options.timeoutMs, consumer.handlerTimeoutMs);
      if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 86_400_000) {
        throw new InvalidIntegrationEventHandlerError(name, `timeoutMs ${describeOptionValue(timeoutMs)} is not a whole number from 1 to 86400000.`);
      }
      const inbox = orDefault(options.inbox, inboxOptions.enabled);
      if (typeof inbox !== 'boolean') {
        throw new InvalidIntegrationEventHandlerError(name, `inbox ${describeOptionValue(inbox)} is not true or false.`);
      }
      // A handled message can come again a lease after it was published (its mark was lost) or a retry
      // delay after an attempt counted as failed whose COMMIT landed: its inbox record must still be there.
      // The record is dated when the call starts (it is written first), and the call and its commit may
      // take timeoutMs each before that. (The lease is this service's: a publishing service's own is the
      // README's to warn about.)
      const longestRetryDelayMs =
        retryPolicy.maxAttempts > 1 ? Math.min(retryPolicy.maxDelayMs, inProcess?.maxRetryDelayMs ?? Infinity) : 0;
      const comesAgainWithinMs = Math.max(relay.leaseMs, longestRetryDelayMs);
      const retentionNeededMs = 2 * timeoutMs + 2 * comesAgainWithinMs;
      if (inbox && inboxOptions.retentionMs < retentionNeededMs) {
        throw new InvalidIntegrationEventHandlerError(
          name,
          `its inbox forgets a handled message after inbox.retentionMs (${inboxOptions.retentionMs} ms), sooner than it can come ` +
            `again: a record, dated when its call starts, must outlast the call and its commit (twice its timeoutMs, ` +
            `${2 * timeoutMs} ms), then twice the longest a message can take to come again (${comesAgainWithinMs} ms: the larger ` +
            `of relay.leaseMs and its longest retry delay), ${retentionNeededMs} ms in all: a duplicate arriving after that would ` +
            'be handled again. Raise inbox.retentionMs (days are the norm).',
        );
      }
      // Either of this handler's queues may be the one already taken: the error names that one.
      const sharedName = byQueue.has(queue) ? queue : deadLetterQueue;
      const existing = byQueue.get(sharedName);
      if (existing) throw new DuplicateHandlerQueueError(sharedName, [existing.name, name]);
      const discovered: DiscoveredHandler = {
        name,
        instance: instance as IIntegrationEventHandler,
        eventClass: metadata.event,
        event,
        queue,
        prefetch,
        // More calls at once than deliveries in hand cannot happen: the prefetch bounds it.
        concurrency: Math.min(concurrency, prefetch),
        deadLetterQueue,
        retryPolicy,
        timeoutMs,
        inbox,
        otherVersions: new Map(),
      };
      byQueue.set(queue, discovered);
      byQueue.set(deadLetterQueue, discovered);
      byClass.set(cls, discovered);
      if (inPlaceOf) byClass.set(inPlaceOf, discovered);
      // A key given as undefined is a class that was not defined yet where the decorator ran (the two
      // handlers' files import each other): refused below, not read as "no pair".
      if (Object.hasOwn(options, 'replaces')) replacing.push({ handler: discovered, replaces: options.replaces });
    }
    const handlers = [...new Set(byQueue.values())];
    // On RabbitMQ each retry tier has a wait queue of its own: a queue another handler names the same
    // would fail boot with the broker's PRECONDITION_FAILED at best, or take the other's retries.
    if (!inProcess) {
      for (const handler of handlers) {
        for (const tier of handler.retryPolicy.tiers()) {
          const other = byQueue.get(waitQueueName(handler.queue, tier));
          if (other === handler) {
            throw new InvalidIntegrationEventHandlerError(
              handler.name,
              `deadLetterQueue ${JSON.stringify(handler.deadLetterQueue)} is one of its own retry wait queues on RabbitMQ: name another.`,
            );
          }
          if (other) throw new DuplicateHandlerQueueError(waitQueueName(handler.queue, tier), [handler.name, other.name], handler.name);
        }
      }
    }
    withOtherVersions(handlers, replacing.map(({ handler, replaces }) => [handler, replacedHandler(handler, replaces, byClass)] as const));
    return handlers;
  }
}

/** The handler `handler`'s `replaces` option names, checked: one of this application, of its event, of another version. */
function replacedHandler(handler: DiscoveredHandler, replaces: unknown, byClass: ReadonlyMap<Function, DiscoveredHandler>): DiscoveredHandler {
  const named = typeof replaces === 'function' ? replaces.name || 'an anonymous class' : JSON.stringify(replaces) ?? String(replaces);
  const replaced = typeof replaces === 'function' ? byClass.get(replaces) : undefined;
  if (replaces === undefined) {
    throw new InvalidIntegrationEventHandlerError(
      handler.name,
      'replaces is undefined where the decorator ran: the class it names was not defined yet, most likely because the ' +
        "two handlers' files import each other. Break the circular import (or leave replaces out).",
    );
  }
  if (!replaced) {
    throw new InvalidIntegrationEventHandlerError(
      handler.name,
      `replaces ${named}, which is not an @IntegrationEventHandler class provided in this application. Name the class of ` +
        'the handler of the other version, and keep it among the providers while both versions are handled.',
    );
  }
  if (replaced === handler || replaced.event.name !== handler.event.name || replaced.event.version === handler.event.version) {
    throw new InvalidIntegrationEventHandlerError(
      handler.name,
      `replaces ${replaced.name}, which handles version ${replaced.event.version} of "${replaced.event.name}": replaces names ` +
        `the handler of another version of its own event ("${handler.event.name}", version ${handler.event.version}).`,
    );
  }
  return replaced;
}

/**
 * Tells each handler the other versions the handlers of its group take: `replaces` pairs two handlers,
 * both ways, and pairs that share a handler form one group (v3 replaces v2, which replaces v1; or two new
 * handlers replacing one). Every queue bound to the event name gets every version, and each handler of
 * a group leaves the other versions of the group to their handlers. Handlers in no group leave nothing.
 */
function withOtherVersions(handlers: readonly DiscoveredHandler[], pairs: ReadonlyArray<readonly [DiscoveredHandler, DiscoveredHandler]>): void {
  const paired = new Map<DiscoveredHandler, DiscoveredHandler[]>();
  for (const [a, b] of pairs) {
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const list = paired.get(from);
      if (list) list.push(to);
      else paired.set(from, [to]);
    }
  }
  for (const handler of handlers) {
    const group = new Set<DiscoveredHandler>([handler]);
    for (const member of group) for (const next of paired.get(member) ?? []) group.add(next);
    const otherVersions = handler.otherVersions as Map<number, string[]>;
    for (const other of group) {
      if (other.event.version === handler.event.version) continue;
      const names = otherVersions.get(other.event.version);
      if (names) names.push(other.name);
      else otherVersions.set(other.event.version, [other.name]);
    }
  }
}

/** The options `@IntegrationEventHandler` takes; any other key is a mistake (a typo, an option of another level). */
const HANDLER_OPTION_KEYS: ReadonlyArray<keyof IntegrationEventHandlerOptions> = [
  'queue',
  'prefetch',
  'concurrency',
  'retry',
  'timeoutMs',
  'deadLetterQueue',
  'inbox',
  'replaces',
];

/** Refuses handler options that are not an object, or that hold a key no handler option has. */
function checkedHandlerOptions(name: string, options: unknown): IntegrationEventHandlerOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidIntegrationEventHandlerError(name, 'its options are not an object.');
  }
  for (const key of Object.keys(options)) {
    if (!(HANDLER_OPTION_KEYS as readonly string[]).includes(key)) {
      throw new InvalidIntegrationEventHandlerError(
        name,
        `it has an unknown option ${JSON.stringify(key)}. The handler options are ${HANDLER_OPTION_KEYS.join(', ')}` +
          ' (attempts and delays go under retry).',
      );
    }
  }
  return options as IntegrationEventHandlerOptions;
}

/**
 * The decorated class `cls` is provided in place of, when its token is one: a superclass of it that
 * carries the `@IntegrationEventHandler` itself (the one `cls` inherits).
 */
function standsInFor(token: unknown, cls: Function): Function | undefined {
  if (typeof token !== 'function' || token === cls) return undefined;
  const metadata: unknown = Reflect.getMetadata(IntegrationEventHandlerDiscovery.KEY, cls);
  if (metadata === undefined || Reflect.getOwnMetadata(IntegrationEventHandlerDiscovery.KEY, token) !== metadata) return undefined;
  // The token carries the class's own metadata, so it is a class: instanceof cannot throw on it.
  return cls.prototype instanceof token ? token : undefined;
}
