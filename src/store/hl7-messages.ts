/**
 * Inbound HL7v2 messages repository: the durable record an AA is only sent after.
 */
import type { Queryable } from './database.ts';
import { timeOrderedId } from './time-ordered-id.ts';

/** Where a stored message is in its processing. */
export type Hl7MessageStatus = 'received' | 'processed' | 'failed';

/** A message to store. */
export interface NewHl7Message {
  practiceId: string;
  /** Connector name. */
  connector: string;
  /** MSH-10. */
  controlId: string;
  /** MSH-9 type and trigger, like `DFT^P03`. */
  messageType: string;
  /** MSH-3 as sent ('' when empty). */
  sendingApplication: string;
  /** MSH-4 as sent ('' when empty). */
  sendingFacility: string;
  receivedAt: Date;
  /** The decoded message text. */
  raw: string;
  /** The charset the bytes were decoded with. */
  rawBytesCharset: 'UTF-8' | 'ISO-8859-1';
}

/** A stored message. */
export interface Hl7MessageRecord extends NewHl7Message {
  id: string;
  status: Hl7MessageStatus;
  error: string | null;
  statusChangedAt: Date | null;
}

/** What {@link Hl7MessageRepository.store} did. */
export interface StoreResult {
  /** The row's id (the earlier row's, for a duplicate). */
  id: string;
  /** True when the same control id from the same sender on the same connector was already stored. */
  duplicate: boolean;
}

interface Row {
  id: string;
  practice_id: string;
  connector: string;
  control_id: string;
  message_type: string;
  sending_application: string;
  sending_facility: string;
  received_at: Date;
  status: Hl7MessageStatus;
  error: string | null;
  status_changed_at: Date | null;
  raw: string;
  raw_bytes_charset: 'UTF-8' | 'ISO-8859-1';
}

const COLUMNS =
  'id, practice_id, connector, control_id, message_type, sending_application, sending_facility, received_at, status, error, status_changed_at, raw, raw_bytes_charset';

const KEY_COLUMNS = 'id, practice_id, connector, control_id, sending_application, sending_facility';

interface KeyRow {
  id: string;
  practice_id: string;
  connector: string;
  control_id: string;
  sending_application: string;
  sending_facility: string;
}

/** The unique key that makes a re-sent control id one row. */
const SENDER_KEY = 'hl7_messages_sender_control_id_key';

/** The columns a new message fills after its id, in the order of {@link INSERT_ROWS}'s arrays $2 to $10. */
const INSERT_COLUMNS = ['practiceId', 'connector', 'controlId', 'sendingApplication', 'sendingFacility', 'messageType', 'receivedAt', 'raw', 'rawBytesCharset'] as const;

const INSERT_ROWS = `(id, practice_id, connector, control_id, sending_application, sending_facility, message_type, received_at, raw, raw_bytes_charset)
  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::text[], $10::text[])`;

function rowKey(row: KeyRow): string {
  return JSON.stringify([row.practice_id, row.connector, row.sending_application, row.sending_facility, row.control_id]);
}

function messageKey(m: NewHl7Message): string {
  return JSON.stringify([m.practiceId.toLowerCase(), m.connector, m.sendingApplication, m.sendingFacility, m.controlId]);
}

function toRecord(row: Row): Hl7MessageRecord {
  return {
    id: row.id,
    practiceId: row.practice_id,
    connector: row.connector,
    controlId: row.control_id,
    messageType: row.message_type,
    sendingApplication: row.sending_application,
    sendingFacility: row.sending_facility,
    receivedAt: row.received_at,
    status: row.status,
    error: row.error,
    statusChangedAt: row.status_changed_at,
    raw: row.raw,
    rawBytesCharset: row.raw_bytes_charset,
  };
}

/** Reads and writes inbound HL7v2 messages. */
export class Hl7MessageRepository {
  private readonly db: Queryable;
  constructor(db: Queryable) {
    this.db = db;
  }

  /**
   * Stores a message with status `received`, once: a message whose control id was already stored for the same
   * practice, connector and sender (MSH-3, MSH-4) is recognised and not stored again. Runs on a pool, as
   * {@link storeMany} does: the row is committed when the promise resolves.
   */
  async store(message: NewHl7Message): Promise<StoreResult> {
    return (await this.storeMany([message]))[0];
  }

  /**
   * Stores several messages in one statement (one commit on a pool), each once, as {@link store} does.
   * Two messages of the batch with the same key are one row: the first is new, the second a duplicate.
   * Runs on a pool (each statement its own transaction), never inside a transaction: a batch is one plain INSERT,
   * and only a batch holding a control id already stored (a re-sent message: rare) fails it and goes again with
   * ON CONFLICT DO NOTHING, which would cost a speculative insertion and one more WAL record per row every time.
   * @returns one result per message, in order.
   */
  async storeMany(messages: readonly NewHl7Message[]): Promise<StoreResult[]> {
    if (messages.length === 0) return [];
    const ids = messages.map((m) => timeOrderedId(m.receivedAt));
    const values = [ids, ...INSERT_COLUMNS.map((key) => messages.map((m) => m[key]))];
    try {
      await this.db.query(`INSERT INTO hl7_messages ${INSERT_ROWS}`, values);
      return ids.map((id) => ({ id, duplicate: false }));
    } catch (error) {
      if ((error as { constraint?: string }).constraint !== SENDER_KEY) throw error;
    }
    const inserted = await this.db.query<{ id: string }>(`INSERT INTO hl7_messages ${INSERT_ROWS} ON CONFLICT ON CONSTRAINT ${SENDER_KEY} DO NOTHING RETURNING id`, values);
    const fresh = new Set(inserted.rows.map((row) => row.id));
    const missing = messages.filter((_, i) => !fresh.has(ids[i]));
    const existing = new Map<string, string>();
    if (missing.length > 0) {
      const found = await this.db.query<KeyRow>(
        `SELECT ${KEY_COLUMNS.split(', ').map((c) => `m.${c}`).join(', ')}
         FROM hl7_messages m
         JOIN unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) AS k (practice_id, connector, control_id, sending_application, sending_facility)
           ON m.practice_id = k.practice_id AND m.connector = k.connector AND m.control_id = k.control_id
          AND m.sending_application = k.sending_application AND m.sending_facility = k.sending_facility`,
        [
          missing.map((m) => m.practiceId),
          missing.map((m) => m.connector),
          missing.map((m) => m.controlId),
          missing.map((m) => m.sendingApplication),
          missing.map((m) => m.sendingFacility),
        ],
      );
      for (const row of found.rows) existing.set(rowKey(row), row.id);
    }
    return messages.map((m, i) => {
      if (fresh.has(ids[i])) return { id: ids[i], duplicate: false };
      // A copy of a row stored earlier, or of one stored by this batch (whose id the lookup above found).
      const earlier = existing.get(messageKey(m));
      if (earlier === undefined) throw new Error('hl7 message conflicted on its control id but the earlier row is gone');
      return { id: earlier, duplicate: true };
    });
  }

  /** One message of a practice. */
  async findById(practiceId: string, id: string): Promise<Hl7MessageRecord | undefined> {
    const { rows } = await this.db.query<Row>(`SELECT ${COLUMNS} FROM hl7_messages WHERE practice_id = $1 AND id = $2`, [practiceId, id]);
    return rows[0] && toRecord(rows[0]);
  }

  /** The messages of a connector with this control id (one per sender), oldest first. */
  async findByControlId(practiceId: string, connector: string, controlId: string): Promise<Hl7MessageRecord[]> {
    const { rows } = await this.db.query<Row>(
      `SELECT ${COLUMNS} FROM hl7_messages WHERE practice_id = $1 AND connector = $2 AND control_id = $3 ORDER BY received_at, id`,
      [practiceId, connector, controlId],
    );
    return rows.map(toRecord);
  }

  /**
   * The oldest messages waiting to be processed (status `received`) of every practice, for the job that turns
   * them into source records and marks each processed or failed.
   */
  async pending(limit = 100): Promise<Hl7MessageRecord[]> {
    const { rows } = await this.db.query<Row>(
      `SELECT ${COLUMNS} FROM hl7_messages WHERE status = 'received' ORDER BY received_at, id LIMIT $1`,
      [Math.max(1, Math.trunc(limit))],
    );
    return rows.map(toRecord);
  }

  /**
   * Locks received messages for the caller's transaction, skipping those another run holds.
   * @returns the ids of those locked and still `received`.
   */
  async claimReceived(messages: readonly Pick<Hl7MessageRecord, 'practiceId' | 'id'>[]): Promise<Set<string>> {
    if (messages.length === 0) return new Set();
    const { rows } = await this.db.query<{ id: string }>(
      `SELECT m.id FROM hl7_messages m JOIN unnest($1::uuid[], $2::uuid[]) AS k (practice_id, id) ON m.practice_id = k.practice_id AND m.id = k.id
       WHERE m.status = 'received' ORDER BY m.id FOR UPDATE OF m SKIP LOCKED`,
      [messages.map((m) => m.practiceId), messages.map((m) => m.id)],
    );
    return new Set(rows.map((r) => r.id));
  }

  /** Marks a message processed (clearing any earlier error). */
  async markProcessed(practiceId: string, id: string, at: Date): Promise<void> {
    await this.settle([{ practiceId, id, error: null }], at);
  }

  /** Marks a message failed with the reason (an id-only diagnostic, never message content). */
  async markFailed(practiceId: string, id: string, error: string, at: Date): Promise<void> {
    await this.settle([{ practiceId, id, error }], at);
  }

  /**
   * Marks messages handled in one statement: `processed` (clearing any earlier error) where `error` is null,
   * else `failed` with that reason (an id-only diagnostic, never message content).
   */
  async settle(outcomes: readonly { practiceId: string; id: string; error: string | null }[], at: Date): Promise<void> {
    if (outcomes.length === 0) return;
    await this.db.query(
      `UPDATE hl7_messages m SET status = CASE WHEN o.error IS NULL THEN 'processed' ELSE 'failed' END, error = o.error, status_changed_at = $4
       FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS o (practice_id, id, error) WHERE m.practice_id = o.practice_id AND m.id = o.id`,
      [outcomes.map((o) => o.practiceId), outcomes.map((o) => o.id), outcomes.map((o) => o.error), at],
    );
  }

  /** How many messages of a practice are in each status. */
  async countByStatus(practiceId: string): Promise<Record<Hl7MessageStatus, number>> {
    const { rows } = await this.db.query<{ status: Hl7MessageStatus; count: number }>(
      'SELECT status, count(*)::int AS count FROM hl7_messages WHERE practice_id = $1 GROUP BY status',
      [practiceId],
    );
    const counts: Record<Hl7MessageStatus, number> = { received: 0, processed: 0, failed: 0 };
    for (const row of rows) counts[row.status] = row.count;
    return counts;
  }
}

/** What to search or reprocess: every criterion given must hold. */
export interface Hl7MessageFilter {
  /** `DFT^P03` (exact) or `DFT` (every trigger of that type). */
  type?: string;
  status?: Hl7MessageStatus;
  /** MSH-3 sending application, or `application|facility` for MSH-3 and MSH-4 exactly. */
  sender?: string;
  connector?: string;
  /** MSH-10, exactly. */
  controlId?: string;
  /** Received at or after. */
  since?: Date;
  /** Received before. */
  until?: Date;
  /** These message ids only. */
  ids?: readonly string[];
}

/** A stored message without its content (for listings). */
export type Hl7MessageSummary = Omit<Hl7MessageRecord, 'raw'> & { sizeChars: number };

/** One page of a search, newest first; `next` is the cursor of the following page, absent on the last. */
export interface Hl7MessagePage {
  items: Hl7MessageSummary[];
  next?: string;
}

/** What {@link Hl7MessageRepository.reprocess} did. */
export interface ReprocessResult {
  /** Messages the filter matched. */
  matched: number;
  /** Of those, how many were processed or failed and are now `received` again. */
  requeued: number;
  /** Of those, how many were still `received` (left as they were). */
  alreadyPending: number;
}

/** Thrown for a page cursor that this repository did not hand out. */
export class InvalidCursorError extends Error {
  constructor() {
    super('the page cursor is not valid (use the "next" value of the previous page)');
    this.name = 'InvalidCursorError';
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether text is a message id (a UUID); anything else can never match one. */
export function isHl7MessageId(text: string): boolean {
  return UUID.test(text);
}

function encodeCursor(receivedAt: Date, id: string): string {
  return Buffer.from(`${receivedAt.toISOString()}|${id}`).toString('base64url');
}

function decodeCursor(cursor: string): { receivedAt: Date; id: string } {
  const [at, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  const receivedAt = new Date(at ?? '');
  if (Number.isNaN(receivedAt.getTime()) || !id || !UUID.test(id)) throw new InvalidCursorError();
  return { receivedAt, id };
}

/** The WHERE clause (after practice_id = $1) of a filter, and its values from $2 on. */
function whereOf(filter: Hl7MessageFilter, values: unknown[]): string {
  const parts: string[] = [];
  const add = (sql: (p: string) => string, value: unknown) => {
    values.push(value);
    parts.push(sql(`$${values.length}`));
  };
  if (filter.type !== undefined) {
    if (filter.type.includes('^')) add((p) => `message_type = ${p}`, filter.type);
    else add((p) => `split_part(message_type, '^', 1) = ${p}`, filter.type);
  }
  if (filter.status !== undefined) add((p) => `status = ${p}`, filter.status);
  if (filter.sender !== undefined) {
    const bar = filter.sender.indexOf('|');
    if (bar === -1) add((p) => `sending_application = ${p}`, filter.sender);
    else {
      add((p) => `sending_application = ${p}`, filter.sender.slice(0, bar));
      add((p) => `sending_facility = ${p}`, filter.sender.slice(bar + 1));
    }
  }
  if (filter.connector !== undefined) add((p) => `connector = ${p}`, filter.connector);
  if (filter.controlId !== undefined) add((p) => `control_id = ${p}`, filter.controlId);
  if (filter.since !== undefined) add((p) => `received_at >= ${p}`, filter.since);
  if (filter.until !== undefined) add((p) => `received_at < ${p}`, filter.until);
  if (filter.ids !== undefined) add((p) => `id = ANY(${p}::uuid[])`, filter.ids.filter((id) => UUID.test(id)));
  return parts.length ? ` AND ${parts.join(' AND ')}` : '';
}

/** Whether a filter has at least one criterion (reprocessing everything needs one on purpose). */
export function hasCriteria(filter: Hl7MessageFilter): boolean {
  return Object.values(filter).some((v) => v !== undefined);
}

/** Messages pruned by retention, per practice. */
export interface PruneResult {
  practiceId: string;
  count: number;
}

/** The admin side of the store: search, reprocess, retention, counts. */
export class Hl7MessageAdmin {
  private readonly db: Queryable;
  constructor(db: Queryable) {
    this.db = db;
  }

  /**
   * Messages of a practice matching a filter, newest first, without their content.
   * @throws InvalidCursorError for a cursor this method did not return.
   */
  async search(practiceId: string, filter: Hl7MessageFilter, page: { limit?: number; cursor?: string } = {}): Promise<Hl7MessagePage> {
    const limit = Math.min(Math.max(1, Math.trunc(page.limit ?? 50)), 1000);
    const values: unknown[] = [practiceId];
    let where = whereOf(filter, values);
    if (page.cursor) {
      const after = decodeCursor(page.cursor);
      values.push(after.receivedAt, after.id);
      where += ` AND (received_at, id) < ($${values.length - 1}, $${values.length}::uuid)`;
    }
    values.push(limit + 1);
    const { rows } = await this.db.query<Omit<Row, 'raw'> & { size_chars: number }>(
      `SELECT ${COLUMNS.replace(', raw,', ',')}, length(raw) AS size_chars FROM hl7_messages
       WHERE practice_id = $1${where} ORDER BY received_at DESC, id DESC LIMIT $${values.length}`,
      values,
    );
    const items = rows.slice(0, limit).map((row) => {
      const { raw: _raw, ...summary } = toRecord({ ...row, raw: '' });
      return { ...summary, sizeChars: row.size_chars };
    });
    const last = items.at(-1);
    return rows.length > limit && last ? { items, next: encodeCursor(last.receivedAt, last.id) } : { items };
  }

  /**
   * Marks the matching messages for processing again: `processed` and `failed` ones go back to `received`
   * (error cleared), so the ingest picks them up; `received` ones are left as they are.
   */
  async reprocess(practiceId: string, filter: Hl7MessageFilter, at: Date): Promise<ReprocessResult> {
    const values: unknown[] = [practiceId];
    const where = whereOf(filter, values);
    values.push(at);
    const { rows } = await this.db.query<{ matched: number; requeued: number }>(
      `WITH matched AS (SELECT id, status FROM hl7_messages WHERE practice_id = $1${where}),
            requeued AS (
              UPDATE hl7_messages m SET status = 'received', error = NULL, status_changed_at = $${values.length}
              FROM matched WHERE m.id = matched.id AND matched.status <> 'received' RETURNING m.id)
       SELECT (SELECT count(*)::int FROM matched) AS matched, (SELECT count(*)::int FROM requeued) AS requeued`,
      values,
    );
    const { matched, requeued } = rows[0];
    return { matched, requeued, alreadyPending: matched - requeued };
  }

  /**
   * Deletes a connector's `processed` messages received before `cutoff` (never `received` or `failed`
   * ones), in batches so no transaction holds the table for long.
   * @returns how many were deleted, per practice.
   */
  async pruneProcessed(connector: string, cutoff: Date, batchSize = 5000): Promise<PruneResult[]> {
    const counts = new Map<string, number>();
    for (;;) {
      const { rows } = await this.db.query<{ practice_id: string; count: number }>(
        `WITH doomed AS (
           SELECT id FROM hl7_messages WHERE connector = $1 AND status = 'processed' AND received_at < $2 LIMIT $3),
         deleted AS (DELETE FROM hl7_messages m USING doomed WHERE m.id = doomed.id RETURNING m.practice_id)
         SELECT practice_id, count(*)::int AS count FROM deleted GROUP BY practice_id`,
        [connector, cutoff, batchSize],
      );
      let total = 0;
      for (const row of rows) {
        counts.set(row.practice_id, (counts.get(row.practice_id) ?? 0) + row.count);
        total += row.count;
      }
      if (total < batchSize) break;
    }
    return [...counts].map(([practiceId, count]) => ({ practiceId, count }));
  }

  /** How many messages each connector holds in each status (every practice). */
  async countsByConnectorAndStatus(): Promise<Array<{ connector: string; status: Hl7MessageStatus; count: number }>> {
    const { rows } = await this.db.query<{ connector: string; status: Hl7MessageStatus; count: number }>(
      'SELECT connector, status, count(*)::int AS count FROM hl7_messages GROUP BY connector, status ORDER BY connector, status',
    );
    return rows;
  }
}
