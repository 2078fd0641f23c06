import { Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ModuleRef, ModulesContainer } from '@nestjs/core';
import { CqrsModule, EventBus } from '@nestjs/cqrs';

/** How often a delivery still waiting for CqrsModule is reported. */
const WAITING_WARNING_MS = 10_000;

/**
 * Tells when @nestjs/cqrs has registered its command, query and event handlers and sagas. CqrsModule does
 * that in its own `onApplicationBootstrap`, which Nest may run after this module's, where the consumers
 * start: always for a plain `CqrsModule` imported by a feature module (global modules go first), and for
 * `CqrsModule.forRoot()` imported after this module. A message delivered before then (a backlog waiting
 * at deploy) would find no command handler, and the domain events its handler raises no `@EventsHandler`,
 * while the inbox recorded it as handled. So the consumers hold deliveries until then. Only when the
 * application has CqrsModule: an EventBus provided otherwise (a test double) never holds anything.
 */
@Injectable()
export class CqrsHandlersReady implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('IntegrationEvents:Consumers');
  private registered: Promise<void> | undefined;
  private ready = true;
  private warning: NodeJS.Timeout | undefined;
  private readonly waits = new WeakMap<AbortSignal, Promise<void>>();

  constructor(
    private readonly moduleRef: ModuleRef,
    private readonly modules: ModulesContainer,
  ) {}

  /**
   * Watches for the registration (before any bootstrap hook runs), of every CqrsModule: an application
   * may import `CqrsModule.forRoot()` and a plain `CqrsModule` too, each with its own buses.
   */
  onModuleInit(): void {
    if (![...this.modules.values()].some((module) => module.metatype === CqrsModule)) return;
    const eventBuses = this.findEventBuses();
    if (eventBuses.length === 0) return;
    this.ready = false;
    this.registered = Promise.all(eventBuses.map((eventBus) => sagasRegistered(eventBus))).then(() => undefined);
    void this.registered.then(() => {
      this.ready = true;
      clearInterval(this.warning);
    });
  }

  onApplicationShutdown(): void {
    clearInterval(this.warning);
  }

  /** Resolves once CqrsModule has registered its handlers; at once when there is no CqrsModule. */
  registration(): Promise<void> {
    return this.registered ?? Promise.resolve();
  }

  /**
   * `undefined` once the handlers are registered (or there is no CqrsModule); else a promise of it, which
   * rejects when `signal` (the consumer's shutdown) fires first: the delivery then goes back to its queue.
   */
  whenReady(signal: AbortSignal): Promise<void> | undefined {
    const registered = this.registered;
    if (this.ready || !registered) return undefined;
    this.warning ??= setInterval(() => {
      if (this.ready) return;
      this.logger.warn('Deliveries are waiting for CqrsModule to register its handlers: Nest has not bootstrapped it yet');
    }, WAITING_WARNING_MS).unref();
    // One wait (and one abort listener) per consumer's signal, however many of its deliveries wait.
    let wait = this.waits.get(signal);
    if (!wait) {
      wait = new Promise((resolve, reject) => {
        const shutdown = (): void => reject(new Error('The application shut down while the message waited for CqrsModule to register its handlers'));
        if (signal.aborted) return shutdown();
        signal.addEventListener('abort', shutdown, { once: true });
        void registered.then(() => {
          signal.removeEventListener('abort', shutdown);
          resolve();
        });
      });
      // Each delivery awaits it; none left unawaited must report an unhandled rejection.
      wait.catch(() => undefined);
      this.waits.set(signal, wait);
    }
    return wait;
  }

  private findEventBuses(): EventBus[] {
    try {
      return this.moduleRef.get(EventBus, { strict: false, each: true });
    } catch {
      return [];
    }
  }
}

/**
 * Resolves when CqrsModule has registered `eventBus`'s handlers: it registers the event, command and
 * query handlers, then the sagas, last, in one synchronous call (a user registering handlers by hand
 * earlier does not count).
 */
function sagasRegistered(eventBus: EventBus): Promise<void> {
  return new Promise((resolve) => {
    const registerSagas = eventBus.registerSagas;
    let seen = false;
    eventBus.registerSagas = function (this: EventBus, ...args: Parameters<EventBus['registerSagas']>) {
      try {
        return registerSagas.apply(this, args);
      } finally {
        if (!seen) {
          seen = true;
          resolve();
        }
      }
    };
  });
}
