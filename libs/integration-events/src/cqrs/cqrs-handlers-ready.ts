import { Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { EventBus } from '@nestjs/cqrs';

/** How long deliveries wait for CqrsModule's handlers before they go ahead without them, with a warning. */
const WAIT_LIMIT_MS = 10_000;

/**
 * Tells when @nestjs/cqrs has registered its command, query and event handlers. CqrsModule does that in
 * its own `onApplicationBootstrap`, which Nest may run after this module's, where the consumers start:
 * always for a plain `CqrsModule` imported by a feature module (global modules go first), and for
 * `CqrsModule.forRoot()` imported after this module. A message delivered before then (a backlog waiting
 * at deploy) would find no command handler, and the domain events its handler raises no `@EventsHandler`,
 * while the inbox recorded it as handled. So the consumers hold deliveries until then.
 */
@Injectable()
export class CqrsHandlersReady implements OnModuleInit {
  private readonly logger = new Logger('IntegrationEvents:Consumers');
  private registered: Promise<void> | undefined;
  private waiting: Promise<void> | undefined;
  private ready = true;

  constructor(private readonly moduleRef: ModuleRef) {}

  /** Watches for the registration (before any bootstrap hook runs). */
  onModuleInit(): void {
    const eventBus = this.findEventBus();
    if (!eventBus) return;
    this.ready = false;
    this.registered = new Promise((resolve) => {
      // CqrsModule registers the event handlers first, then commands, queries and sagas in the same
      // synchronous call: by the time a promise continuation runs, all of them are registered.
      const register = eventBus.register;
      let seen = false;
      eventBus.register = function (this: EventBus, ...args: Parameters<EventBus['register']>) {
        if (!seen) {
          seen = true;
          resolve();
        }
        return register.apply(this, args);
      };
    });
    void this.registered.then(() => (this.ready = true));
  }

  /** Resolves once CqrsModule has registered its handlers; at once when there is no CqrsModule. */
  registration(): Promise<void> {
    return this.registered ?? Promise.resolve();
  }

  /** `undefined` once the handlers are registered (or there is no CqrsModule); else a promise of it. */
  whenReady(): Promise<void> | undefined {
    if (this.ready || !this.registered) return undefined;
    this.waiting ??= new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.logger.warn(
          `CqrsModule has not registered its handlers ${WAIT_LIMIT_MS / 1000} s after the first delivery; handling messages without waiting ` +
            'any longer (is EventBus provided without CqrsModule?)',
        );
        this.ready = true;
        resolve();
      }, WAIT_LIMIT_MS);
      timer.unref();
      void this.registered!.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    return this.waiting;
  }

  private findEventBus(): EventBus | undefined {
    try {
      return this.moduleRef.get(EventBus, { strict: false });
    } catch {
      return undefined;
    }
  }
}
