import { randomUUID } from 'node:crypto';

/**
 * A new message id: a version 7 UUID (RFC 9562), whose first 48 bits are the Unix time in milliseconds
 * and whose other 74 free bits are random. Ids made later sort after ids made earlier (to the
 * millisecond), as MassTransit's `NewId` and CAP's snowflake ids do: every new outbox row, and every
 * inbox row keyed by it, goes to the right-hand edge of its B-tree index instead of to a random page of
 * it. On tables larger than PostgreSQL's buffers that means far less WAL (a random page's first change
 * after a checkpoint writes the whole 8 kB page) and fewer pages read back: see bench/README.md.
 *
 * The random part comes from a version 4 UUID (`crypto.randomUUID()`, which draws from a cached pool of
 * random bytes); its version nibble is replaced, its variant bits are kept.
 *
 * @param now the time to put in the id, in ms since the epoch (the clock by default)
 */
export function newMessageId(now: number = Date.now()): string {
  const time = Math.trunc(now).toString(16).padStart(12, '0');
  // randomUUID(): xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx (N in 8–b); from index 15 on, random and variant.
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${randomUUID().slice(15)}`;
}
