import type { DeadLetter } from '../dead-letter/dead-letter.interface';
import type { RetryPolicyOptions } from '../retry/retry-policy-options.interface';
import type { InProcessBroker } from '../transport/in-process/in-process-broker';
import type { QueueType } from './integration-events-module-options.interface';

/** The module options after defaults and validation: every field present, every value checked. */
export interface ResolvedIntegrationEventsOptions {
  readonly serviceName: string;
  /** Present when the transport is RabbitMQ. */
  readonly rabbitmq:
    | {
    readonly url: string;
    /** `url` with the password replaced by `***`, for logs and errors. */
    readonly redactedUrl: string;
    readonly socketOptions: Readonly<Record<string, unknown>>;
    readonly exchange: string;
    readonly heartbeatSeconds: number;
    readonly reconnectInitialDelayMs: number;
    readonly reconnectMaxDelayMs: number;
    readonly connectionName: string;
  }
    | undefined;
  /** Present when the transport is the in-process broker. */
  readonly inProcess:
    | { readonly broker: InProcessBroker; readonly exchange: string; readonly maxRetryDelayMs: number | undefined }
    | undefined;
  readonly outbox: {
    readonly schema: string | undefined;
    readonly table: string;
    readonly maxPayloadBytes: number;
    readonly retentionMs: number;
    readonly preparedStatements: boolean;
  };
  readonly inbox: {
    readonly enabled: boolean;
    readonly schema: string | undefined;
    readonly table: string;
    readonly retentionMs: number;
  };
  readonly cleanup: {
    readonly enabled: boolean;
    readonly intervalMs: number;
    readonly batchSize: number;
  };
  readonly relay: {
    readonly enabled: boolean;
    readonly pollIntervalMs: number;
    readonly batchSize: number;
    readonly leaseMs: number;
    readonly confirmTimeoutMs: number;
    readonly maxUnconfirmed: number;
    readonly retryInitialDelayMs: number;
    readonly retryMaxDelayMs: number;
  };
  readonly consumer: {
    readonly enabled: boolean;
    readonly prefetch: number;
    readonly concurrency: number;
    readonly queueType: QueueType;
    readonly maxBodyBytes: number;
    readonly maxDepth: number;
    readonly shutdownTimeoutMs: number;
    readonly ackDelayMs: number;
    /** Validated; merged with each handler's own options at discovery. */
    readonly retry: RetryPolicyOptions;
    readonly handlerTimeoutMs: number;
    readonly onDeadLetter: ((deadLetter: DeadLetter) => void | Promise<void>) | undefined;
  };
  readonly cqrs: {
    readonly enabled: boolean;
    readonly maxDispatchDepth: number;
  };
  readonly dataSourceName: string;
  readonly transactionConnectionName: string | undefined;
}
