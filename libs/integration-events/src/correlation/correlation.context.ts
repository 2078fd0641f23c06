import { Injectable } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { ClsService } from 'nestjs-cls';

/** The ids that tie a message to the flow it belongs to and to what caused it. */
export interface CorrelationIds {
  /** Shared by every message of one business flow, across services. */
  readonly correlationId?: string;
  /** Id of the request or message that caused the current work. */
  readonly causationId?: string;
}

const CORRELATION_ID = Symbol('nestjs-integration-events:correlation-id');
const CAUSATION_ID = Symbol('nestjs-integration-events:causation-id');

/**
 * Where the current correlation and causation ids live: the nestjs-cls context of the request or of
 * the message being handled. `publish()` reads them; the HTTP interceptor and the consumer set them.
 * Without nestjs-cls registered, there is no ambient context and every event starts its own flow.
 */
@Injectable()
export class CorrelationContext {
  private cls: ClsService | null | undefined;

  constructor(private readonly moduleRef: ModuleRef) {}

  /** The ids of the current context (empty outside one). */
  current(): CorrelationIds {
    const cls = this.service();
    if (!cls?.isActive()) return {};
    return { correlationId: cls.get(CORRELATION_ID), causationId: cls.get(CAUSATION_ID) };
  }

  /** Runs `fn` in a fresh context carrying `ids` (for handling one message). */
  run<T>(ids: CorrelationIds, fn: () => T): T {
    const cls = this.service();
    if (!cls) return fn();
    return cls.run({ ifNested: 'override' }, () => {
      cls.set(CORRELATION_ID, ids.correlationId);
      cls.set(CAUSATION_ID, ids.causationId);
      return fn();
    });
  }

  /** Sets the ids in the current context; returns false when there is no active context. */
  set(ids: CorrelationIds): boolean {
    const cls = this.service();
    if (!cls?.isActive()) return false;
    cls.set(CORRELATION_ID, ids.correlationId);
    cls.set(CAUSATION_ID, ids.causationId);
    return true;
  }

  /** Whether nestjs-cls is registered in the application. */
  get available(): boolean {
    return this.service() !== null;
  }

  private service(): ClsService | null {
    if (this.cls === undefined) {
      try {
        this.cls = this.moduleRef.get(ClsService, { strict: false });
      } catch {
        this.cls = null;
      }
    }
    return this.cls ?? null;
  }
}
