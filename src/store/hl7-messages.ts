/**
 * Inbound HL7v2 messages repository: the durable record an AA is only sent after.
 */
import type { Queryable } from './database.ts';

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
   * practice, connector and sender (MSH-3, MSH-4) is recognised and not stored again. When this runs on a pool
   * the row is committed when the promise resolves.
   */
  async store(message: NewHl7Message): Promise<StoreResult> {
    return (await this.storeMany([message]))[0];
  }

  /**
   * Stores several messages in one statement (one commit on a pool), each once, as {@link store} does.
   * Two messages of the batch with the same key are one row: the first is new, the second a duplicate.
   * @returns one result per message, in order.
   */
  async storeMany(messages: readonly NewHl7Message[]): Promise<StoreResult[]> {
    if (messages.length === 0) return [];
    const column = <K extends keyof NewHl7Message>(key: K) => messages.map((m) => m[key]);
    const inserted = await this.db.query<KeyRow>(
      `INSERT INTO hl7_messages (practice_id, connector, control_id, sending_application, sending_facility, message_type, received_at, raw, raw_bytes_charset)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::text[])
       ON CONFLICT ON CONSTRAINT hl7_messages_sender_control_id_key DO NOTHING
       RETURNING ${KEY_COLUMNS}`,
      [
        column('practiceId'),
        column('connector'),
        column('controlId'),
        column('sendingApplication'),
        column('sendingFacility'),
        column('messageType'),
        column('receivedAt'),
        column('raw'),
        column('rawBytesCharset'),
      ],
    );
    const fresh = new Map(inserted.rows.map((row) => [rowKey(row), row.id]));
    const missing = messages.filter((m) => !fresh.has(messageKey(m)));
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
    return messages.map((m) => {
      const key = messageKey(m);
      const id = fresh.get(key);
      if (id !== undefined) {
        fresh.delete(key); // a second copy in the same batch is a duplicate
        existing.set(key, id);
        return { id, duplicate: false };
      }
      const earlier = existing.get(key);
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

  /** Marks a message processed (clearing any earlier error). */
  async markProcessed(practiceId: string, id: string, at: Date): Promise<void> {
    await this.db.query(
      `UPDATE hl7_messages SET status = 'processed', error = NULL, status_changed_at = $3 WHERE practice_id = $1 AND id = $2`,
      [practiceId, id, at],
    );
  }

  /** Marks a message failed with the reason (an id-only diagnostic, never message content). */
  async markFailed(practiceId: string, id: string, error: string, at: Date): Promise<void> {
    await this.db.query(
      `UPDATE hl7_messages SET status = 'failed', error = $3, status_changed_at = $4 WHERE practice_id = $1 AND id = $2`,
      [practiceId, id, error, at],
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
