import { Injectable } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { getTransactionHostToken, type TransactionHost } from '@nestjs-cls/transactional';
import type { EntityManager } from 'typeorm';
import { IntegrationEventsConfig } from '../options/integration-events.config';

/**
 * Answers "which EntityManager is the current transaction's?": the one passed explicitly, else the
 * ambient one of `@nestjs-cls/transactional` (`@Transactional()`, `TransactionHost.withTransaction()`),
 * else none.
 */
@Injectable()
export class EntityManagerResolver {
  private transactionHost: TransactionHost | null | undefined;

  constructor(
    private readonly config: IntegrationEventsConfig,
    private readonly moduleRef: ModuleRef,
  ) {}

  /** The transaction to write into, or `undefined` when none is active. */
  resolve(explicit: EntityManager | undefined): EntityManager | undefined {
    if (explicit) return explicit;
    const host = this.host();
    if (host?.isTransactionActive()) return host.tx as unknown as EntityManager;
    return undefined;
  }

  /** The nestjs-cls TransactionHost the library works with, or `null` when none is registered. */
  host(): TransactionHost | null {
    if (this.transactionHost === undefined) {
      const token = getTransactionHostToken(this.config.options.transactionConnectionName);
      try {
        this.transactionHost = this.moduleRef.get<TransactionHost>(token as symbol, { strict: false });
      } catch {
        // No ClsPluginTransactional registered: only explicit managers and standalone publishes work.
        this.transactionHost = null;
      }
    }
    return this.transactionHost;
  }
}
