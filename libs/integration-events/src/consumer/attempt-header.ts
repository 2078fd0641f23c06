import { MessageHeaders } from '../envelope/message-headers';

/**
 * The attempt a delivery is, from the library's own `ie-attempt` header (absent on the first delivery).
 * The header crosses the network, so it is clamped, never trusted: not a whole number → 1, below 1 → 1,
 * above `maxAttempts` → `maxAttempts` (one last try, then the dead-letter queue).
 */
export function readAttempt(headers: Readonly<Record<string, unknown>>, maxAttempts: number): number {
  const raw = headers[MessageHeaders.Attempt];
  const value = typeof raw === 'string' && /^-?\d{1,15}$/.test(raw.trim()) ? Number(raw) : raw;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) return 1;
  return Math.min(value, maxAttempts);
}
