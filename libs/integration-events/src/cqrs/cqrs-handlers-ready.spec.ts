import { Logger } from '@nestjs/common';
import type { ModuleRef } from '@nestjs/core';
import type { EventBus } from '@nestjs/cqrs';
import { CqrsHandlersReady } from './cqrs-handlers-ready';

describe('CqrsHandlersReady', () => {
  const withBus = (eventBus: Partial<EventBus> | undefined) => {
    const moduleRef = {
      get: () => {
        if (!eventBus) throw new Error('not found');
        return eventBus;
      },
    } as unknown as ModuleRef;
    const ready = new CqrsHandlersReady(moduleRef);
    ready.onModuleInit();
    return ready;
  };

  afterEach(() => jest.useRealTimers());

  it('never holds a delivery without CqrsModule', () => {
    expect(withBus(undefined).whenReady()).toBeUndefined();
  });

  it('holds deliveries until the EventBus registers its handlers, then lets them through, registering as before', async () => {
    const registered: unknown[] = [];
    const eventBus = { register: (handlers: unknown[] = []) => void registered.push(...handlers) } as Partial<EventBus>;
    const ready = withBus(eventBus);
    let released = false;
    void ready.whenReady()!.then(() => (released = true));
    await Promise.resolve();
    expect(released).toBe(false);
    eventBus.register!(['SomeHandler' as never]);
    await new Promise(setImmediate);
    expect(released).toBe(true);
    expect(registered).toEqual(['SomeHandler']);
    expect(ready.whenReady()).toBeUndefined();
  });

  it('goes ahead with a warning when the handlers are never registered (an EventBus without CqrsModule)', async () => {
    jest.useFakeTimers();
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      const ready = withBus({ register: () => undefined });
      let released = false;
      void ready.whenReady()!.then(() => (released = true));
      await jest.advanceTimersByTimeAsync(9_999);
      expect(released).toBe(false);
      await jest.advanceTimersByTimeAsync(1);
      expect(released).toBe(true);
      expect(warn).toHaveBeenCalledWith(expect.stringContaining('CqrsModule has not registered its handlers 10 s after the first delivery'));
      expect(ready.whenReady()).toBeUndefined();
    } finally {
      warn.mockRestore();
    }
  });
});
