/**
 * Row ids that append to their primary key's index: UUIDs version 7 (RFC 9562), for tables whose rows are inserted
 * many at a time (HL7 messages, ledger entries).
 */
import { randomUUID } from 'node:crypto';

/** `at` in milliseconds as a version 7 UUID's first 48 bits: `xxxxxxxx-xxxx-`. */
function timePrefix(at: Date): string {
  const ms = at.getTime().toString(16).padStart(12, '0');
  return `${ms.slice(0, 8)}-${ms.slice(8)}-`;
}

/**
 * A new id: a UUID version 7, its first 48 bits `at` in milliseconds and the rest random, so rows created later go
 * to the right-hand end of the primary key's index instead of a random page of it.
 */
export function timeOrderedId(at: Date): string {
  // randomUUID's version 4 text after its version digit is random bits and the same variant bits as version 7.
  return `${timePrefix(at)}7${randomUUID().slice(15)}`;
}

/**
 * `count` new ids made together (a batch's rows), in ascending order: UUIDs version 7 of `at` whose last 32 bits
 * count up from a random start, the 42 bits before them random, both drawn once for all. Distinct from each other, and
 * from any other batch's unless both drew the same 42 bits in the same millisecond (a primary key refuses the
 * duplicate). One random draw instead of one per id: a batch of ledger lines has thousands.
 */
export function timeOrderedIds(at: Date, count: number): string[] {
  if (count > 0xffffffff) throw new RangeError(`timeOrderedIds makes at most 2^32 ids at once, not ${count}`);
  // After the version digit: "xxx-yxxx-xxxx" kept, then the last 8 random hex digits (32 bits) start the counter.
  const uuid = randomUUID();
  const random = `${timePrefix(at)}7${uuid.slice(15, 28)}`;
  const start = Number.parseInt(uuid.slice(28), 16) % (0x100000000 - count + 1);
  const ids = new Array<string>(count);
  for (let i = 0; i < count; i++) ids[i] = random + (start + i).toString(16).padStart(8, '0');
  return ids;
}
