import { Logger } from '@nestjs/common';
import type { ModuleRef, ModulesContainer } from '@nestjs/core';
import { CqrsModule, type EventBus } from '@nestjs/cqrs';
import { CqrsHandlersReady } from './cqrs-handlers-ready';

describe('CqrsHandlersReady', () => {
  const withBus = (eventBus: Partial<EventBus> | Array<Partial<EventBus>> | undefined, modules: Function[] = [CqrsModule]) => {
    const moduleRef = {
      get: (_token: unknown, options: { each?: boolean }) => {
        if (!eventBus) throw new Error('not found');
        const all = Array.isArray(eventBus) ? eventBus : [eventBus];
        return options.each ? all : all.at(-1);
      },
    } as unknown as ModuleRef;
    const container = new Map(modules.map((metatype, i) => [String(i), { metatype }])) as unknown as ModulesContainer;
    const ready = new CqrsHandlersReady(moduleRef, container);
    ready.onModuleInit();
    return ready;
  };
  const never = new AbortController().signal;

  afterEach(() => jest.useRealTimers());

  it('never holds a delivery without CqrsModule, even with an EventBus (a test double)', () => {
    expect(withBus(undefined).whenReady(never)).toBeUndefined();
    expect(withBus({ registerSagas: () => undefined }, []).whenReady(never)).toBeUndefined();
  });

  it('holds deliveries until CqrsModule has registered its sagas, last, then lets them through', async () => {
    const registered: unknown[] = [];
    const eventBus = { registerSagas: (sagas: unknown[] = []) => void registered.push(...sagas) } as Partial<EventBus>;
    const ready = withBus(eventBus);
    let released = false;
    void ready.whenReady(never)!.then(() => (released = true));
    await new Promise(setImmediate);
    expect(released).toBe(false);
    eventBus.registerSagas!(['SomeSaga' as never]);
    await new Promise(setImmediate);
    expect(released).toBe(true);
    expect(registered).toEqual(['SomeSaga']);
    expect(ready.whenReady(never)).toBeUndefined();
  });

  it('waits for every CqrsModule\'s buses (forRoot() and a plain one in a feature module), with one wait per consumer', async () => {
    const global = { registerSagas: () => undefined } as Partial<EventBus>;
    const feature = { registerSagas: () => undefined } as Partial<EventBus>;
    const ready = withBus([global, feature]);
    const signal = new AbortController().signal;
    const waiting = ready.whenReady(signal)!;
    expect(ready.whenReady(signal)).toBe(waiting);
    let released = false;
    void waiting.then(() => (released = true));
    global.registerSagas!([]);
    await new Promise(setImmediate);
    expect(released).toBe(false);
    feature.registerSagas!([]);
    await new Promise(setImmediate);
    expect(released).toBe(true);
  });

  it('gives a waiting delivery up when the consumer shuts down, and says every 10 s that deliveries wait', async () => {
    jest.useFakeTimers();
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      const ready = withBus({ registerSagas: () => undefined });
      const shutdown = new AbortController();
      const waiting = ready.whenReady(shutdown.signal)!;
      await jest.advanceTimersByTimeAsync(10_000);
      expect(warn).toHaveBeenCalledWith(expect.stringContaining('Deliveries are waiting for CqrsModule to register its handlers'));
      shutdown.abort();
      await expect(waiting).rejects.toThrow('The application shut down while the message waited for CqrsModule');
      ready.onApplicationShutdown();
      warn.mockClear();
      await jest.advanceTimersByTimeAsync(30_000);
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
    }
  });
});
