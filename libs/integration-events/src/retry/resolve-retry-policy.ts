import { RetryPolicy, DEFAULT_RETRY_POLICY } from './retry-policy';
import type { RetryPolicyOptions } from './retry-policy-options.interface';

const KNOWN_KEYS: ReadonlyArray<keyof RetryPolicyOptions> = [
  'maxAttempts',
  'initialDelayMs',
  'multiplier',
  'maxDelayMs',
  'jitter',
  'retryable',
];

/** A refused retry option: `field` is relative to the policy (`maxAttempts`), `expected` says the fix. */
export class RetryPolicyOptionError extends Error {
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly expected: string,
  ) {
    super(`${field}: ${expected}`);
  }
}

/**
 * Merges retry options (later ones win, field by field) over the defaults and validates the result.
 * @throws RetryPolicyOptionError naming the refused field
 */
export function resolveRetryPolicy(...layers: ReadonlyArray<RetryPolicyOptions | undefined>): RetryPolicy {
  const merged: Record<string, unknown> = {};
  for (const layer of layers) {
    if (layer === undefined) continue;
    if (typeof layer !== 'object' || layer === null || Array.isArray(layer)) {
      throw new RetryPolicyOptionError('(retry)', layer, 'pass an object of retry options');
    }
    for (const [key, value] of Object.entries(layer)) {
      if (!(KNOWN_KEYS as readonly string[]).includes(key)) {
        throw new RetryPolicyOptionError(key, '(unknown option)', `remove it; the retry options are ${KNOWN_KEYS.join(', ')}`);
      }
      if (value !== undefined) merged[key] = value;
    }
  }
  const maxAttempts = integer(merged, 'maxAttempts', DEFAULT_RETRY_POLICY.maxAttempts, 1, 1_000);
  const initialDelayMs = integer(merged, 'initialDelayMs', DEFAULT_RETRY_POLICY.initialDelayMs, 1, 86_400_000);
  const maxDelayMs = integer(merged, 'maxDelayMs', DEFAULT_RETRY_POLICY.maxDelayMs, 1, 7 * 86_400_000);
  if (maxDelayMs < initialDelayMs) {
    throw new RetryPolicyOptionError('maxDelayMs', maxDelayMs, `make it at least initialDelayMs (${initialDelayMs})`);
  }
  const multiplier = number(merged, 'multiplier', DEFAULT_RETRY_POLICY.multiplier, 1, 100);
  const jitter = number(merged, 'jitter', DEFAULT_RETRY_POLICY.jitter, 0, 1);
  // Only undefined is "left out" (a layer's undefined keeps the layer below): null is refused below.
  const retryable = 'retryable' in merged ? merged.retryable : () => true;
  if (typeof retryable !== 'function') {
    throw new RetryPolicyOptionError('retryable', retryable, 'pass a function (error) => boolean');
  }
  return new RetryPolicy(maxAttempts, initialDelayMs, multiplier, maxDelayMs, jitter, retryable as (error: unknown) => boolean);
}

function integer(values: Record<string, unknown>, key: string, fallback: number, min: number, max: number): number {
  const value = key in values ? values[key] : fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new RetryPolicyOptionError(key, value, `use a whole number from ${min} to ${max}`);
  }
  return value;
}

function number(values: Record<string, unknown>, key: string, fallback: number, min: number, max: number): number {
  const value = key in values ? values[key] : fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new RetryPolicyOptionError(key, value, `use a number from ${min} to ${max}`);
  }
  return value;
}
