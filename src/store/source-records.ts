/**
 * Source records (everything a connector pulled, as received, once per version), the quarantine (what could not
 * be stored or ingested, with an OperationOutcome naming the problem) and connector runs (sync status).
 *
 * Writes take the transaction they belong to, so a connector stores a page, its quarantined entries and its
 * checkpoint in one commit.
 */
import { hostname } from 'node:os';
import type { OperationOutcome } from '@medplum/fhirtypes';
import type pg from 'pg';
import type { Clock } from '../domain/clock.ts';
import type { SourceRecord } from '../domain/source-record.ts';
import type { Queryable } from './database.ts';

/** Where a source record is in ingest. */
export type SourceRecordStatus = 'pending' | 'ingested' | 'quarantined';

/** A stored source record. */
export interface StoredSourceRecord extends SourceRecord {
  /** Row id (a bigint as a decimal string); ascending in arrival order. */
  id: string;
  receivedAt: Date;
  status: SourceRecordStatus;
  ingestedAt: Date | null;
}

/** Something to quarantine. */
export interface NewQuarantineEntry {
  practiceId: string;
  connector: string;
  resourceType: string;
  /** The id at the source, when one could be read. */
  sourceId?: string | null;
  /** The stored source record ingest refused, when there is one. */
  sourceRecordId?: string | null;
  /** The input as received (JSON text, an HL7 segment group, a CSV line). */
  raw: string;
  outcome: OperationOutcome;
}

/** A quarantined input. */
export interface QuarantineEntry extends Required<NewQuarantineEntry> {
  id: string;
  createdAt: Date;
  resolvedAt: Date | null;
}

/** One page of a listing; `next` is the cursor for the following page, absent on the last. */
export interface Page<T> {
  items: T[];
  next?: string;
}

/** Counts of one connector's records of one resource type. */
export interface SourceRecordCounts {
  resourceType: string;
  total: number;
  pending: number;
  ingested: number;
  quarantined: number;
}

interface RecordRow {
  id: string;
  practice_id: string;
  connector: string;
  transport: SourceRecord['transport'];
  resource_type: string;
  source_id: string;
  version_id: string;
  last_updated: Date | null;
  content_hash: string;
  /** The JSON text as received (a text column: parsed here, once). */
  body: string;
  received_at: Date;
  status: SourceRecordStatus;
  ingested_at: Date | null;
}

const RECORD_COLUMNS =
  'id::text AS id, practice_id, connector, transport, resource_type, source_id, version_id, last_updated, content_hash, body, received_at, status, ingested_at';

function toRecord(row: RecordRow): StoredSourceRecord {
  return {
    id: row.id,
    practiceId: row.practice_id,
    connector: row.connector,
    transport: row.transport,
    resourceType: row.resource_type,
    sourceId: row.source_id,
    versionId: row.version_id,
    lastUpdated: row.last_updated,
    contentHash: row.content_hash,
    body: JSON.parse(row.body),
    receivedAt: row.received_at,
    status: row.status,
    ingestedAt: row.ingested_at,
  };
}

interface QuarantineRow {
  id: string;
  practice_id: string;
  connector: string;
  resource_type: string;
  source_id: string | null;
  source_record_id: string | null;
  raw: string;
  outcome: OperationOutcome;
  created_at: Date;
  resolved_at: Date | null;
}

const QUARANTINE_COLUMNS =
  'id::text AS id, practice_id, connector, resource_type, source_id, source_record_id::text AS source_record_id, raw, outcome, created_at, resolved_at';

function toQuarantine(row: QuarantineRow): QuarantineEntry {
  return {
    id: row.id,
    practiceId: row.practice_id,
    connector: row.connector,
    resourceType: row.resource_type,
    sourceId: row.source_id,
    sourceRecordId: row.source_record_id,
    raw: row.raw,
    outcome: row.outcome,
    createdAt: row.created_at,
    resolvedAt: row.resolved_at,
  };
}

/** A listing cursor is the last row id seen; anything else is refused rather than misread. */
function cursor(after: string | undefined): string | null {
  if (after === undefined) return null;
  if (!/^\d{1,19}$/.test(after)) throw new RangeError('invalid cursor');
  return after;
}

/** Separates the bodies of a batch in one parameter: a control character, which JSON text never holds unescaped. */
const RECORD_SEPARATOR = '\x1e';

/**
 * A record to store: a {@link SourceRecord} with its body parsed (`body`, serialised here), or with its body as the
 * JSON text received (`bodyText`, an NDJSON line, say: stored as is, nothing parsed or serialised again), or as that
 * text's UTF-8 bytes (`bodyBytes`: see {@link joinedBodies}). A `bodyText` or `bodyBytes` must be JSON the caller has
 * parsed: the database stores it as text, without checking it again.
 */
export type NewSourceRecord = Omit<SourceRecord, 'body'> &
  (
    | { body: unknown; bodyText?: undefined; bodyBytes?: undefined }
    | { bodyText: string; body?: undefined; bodyBytes?: undefined }
    | { bodyBytes: Uint8Array; body?: undefined; bodyText?: undefined }
  );

const notJsonText = (record: NewSourceRecord) => new RangeError(`the body of ${record.resourceType}/${record.sourceId} is not JSON text`);

function bodyText(record: NewSourceRecord): string {
  const text = record.bodyText ?? (JSON.stringify(record.body) as string | undefined);
  if (text === undefined || text.includes(RECORD_SEPARATOR)) throw notJsonText(record);
  return text;
}

/**
 * The bodies of the records as one parameter: their UTF-8 bytes separated by U+001E, sent as is (binary text). Bodies
 * given as bytes that already lie so, one after another in one buffer with a U+001E after each (as a Bulk import's
 * writers lay a batch out, see bulk-writers.ts), are sent where they lie; any others are written into a new buffer.
 * Joined as a string (a Bulk batch's is about a megabyte), they were flattened into V8's large-object space, garbage
 * that only a full collection frees (it kept the importer's peak RSS near 300 MB), and encoded again by the driver.
 */
function joinedBodies(records: readonly NewSourceRecord[]): Buffer {
  const laidOut = bodiesLaidOut(records);
  if (laidOut) return laidOut;
  const bodies = records.map((r) => r.bodyBytes ?? bodyText(r));
  let bytes = bodies.length - 1;
  for (const body of bodies) bytes += typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  const joined = Buffer.allocUnsafe(bytes);
  let at = 0;
  for (const [i, body] of bodies.entries()) {
    if (i > 0) joined[at++] = 0x1e;
    if (typeof body === 'string') at += joined.write(body, at);
    else if (body.includes(0x1e)) throw notJsonText(records[i]!);
    else {
      joined.set(body, at);
      at += body.length;
    }
  }
  return joined;
}

/**
 * The records' bodies as one view of the buffer they lie in, when they are all bytes lying one after another in one
 * buffer, each followed by U+001E (the last one's left out of the view); else undefined.
 * @throws RangeError when a body holds U+001E.
 */
function bodiesLaidOut(records: readonly NewSourceRecord[]): Buffer | undefined {
  const first = records[0]?.bodyBytes;
  if (first === undefined) return undefined;
  const all = Buffer.from(first.buffer, first.byteOffset);
  let end = first.length;
  for (let i = 1; i < records.length; i++) {
    const body = records[i]!.bodyBytes;
    if (body === undefined || body.buffer !== first.buffer || body.byteOffset - first.byteOffset !== end + 1 || all[end] !== 0x1e) return undefined;
    end += 1 + body.length;
  }
  const joined = all.subarray(0, end);
  // The only U+001E are the separators: one after each body but the last.
  let separators = 0;
  for (let at = joined.indexOf(0x1e); at >= 0; at = joined.indexOf(0x1e, at + 1)) separators++;
  if (separators !== records.length - 1) throw notJsonText(records.find((r) => r.bodyBytes!.includes(0x1e))!);
  return joined;
}

/**
 * The records grouped by practice, connector, transport and resource type, each group in the records' order (one
 * group, the records themselves, when they all share those four).
 */
function sameSourceGroups(records: readonly NewSourceRecord[]): (readonly NewSourceRecord[])[] {
  if (records.length === 0) return [];
  const first = records[0]!;
  const same = (r: NewSourceRecord) => r.practiceId === first.practiceId && r.connector === first.connector && r.transport === first.transport && r.resourceType === first.resourceType;
  if (records.every(same)) return [records];
  const groups = new Map<string, NewSourceRecord[]>();
  for (const r of records) {
    const key = JSON.stringify([r.practiceId, r.connector, r.transport, r.resourceType]);
    const group = groups.get(key);
    if (group) group.push(r);
    else groups.set(key, [r]);
  }
  return [...groups.values()];
}

/** The records of one group (see {@link sameSourceGroups}) without the repeated versions, the first of each kept. */
function firstOfEachVersion(records: readonly NewSourceRecord[]): readonly NewSourceRecord[] {
  const seen = new Set<string>();
  const first = records.filter((r) => {
    const key = `${r.sourceId}${RECORD_SEPARATOR}${r.versionId}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return first.length === records.length ? records : first;
}

/** One column of the records as one text parameter, the values separated by U+001E (refused in a value). */
function joinedText(records: readonly NewSourceRecord[], what: string, value: (r: NewSourceRecord) => string): string {
  const values = records.map(value);
  const bad = values.findIndex((v) => v.includes(RECORD_SEPARATOR));
  if (bad >= 0) throw new RangeError(`the ${what} of ${records[bad]!.resourceType}/${records[bad]!.sourceId} holds U+001E`);
  return values.join(RECORD_SEPARATOR);
}

/** A record's lastUpdated as milliseconds since 1970 (empty when absent). */
function epochMsText(record: NewSourceRecord): string {
  if (record.lastUpdated === null) return '';
  const ms = record.lastUpdated.getTime();
  if (Number.isNaN(ms)) throw new RangeError(`the lastUpdated of ${record.resourceType}/${record.sourceId} is not a valid date`);
  return String(ms);
}

/** Whether an insert was refused because a row with one of its identities was committed meanwhile. */
function isIdentityConflict(error: unknown): boolean {
  const e = error as { code?: string; constraint?: string };
  return e.code === '23505' && e.constraint === 'source_records_identity_key';
}

/**
 * The columns a record is stored with, from the parameters {@link SourceRecordRepository.storeGroup} sends: each
 * text split by `string_to_table` and zipped by `ROWS FROM` (no array built, as `unnest(string_to_array(...))` does).
 * The lastUpdated instants travel as milliseconds since 1970 (formatting and parsing ISO text cost about a
 * microsecond a line on each side), made an instant in integer steps, exact at any date: days, then milliseconds, in
 * UTC (seconds as a float, as `to_timestamp` takes them, lose microseconds in far years).
 */
const INSERT_RECORDS = `INSERT INTO source_records (practice_id, connector, transport, resource_type, source_id, version_id, last_updated, content_hash, body, received_at)
       SELECT $1::uuid, $2::text, $3::text, $4::text, r.source_id, r.version_id,
              (timestamp '1970-01-01' + (r.last_updated_ms::bigint / 86400000) * interval '1 day' + (r.last_updated_ms::bigint % 86400000) * interval '1 millisecond')
                AT TIME ZONE 'UTC',
              r.content_hash, r.body, $10
       FROM ROWS FROM (string_to_table($5::text, E'\\x1e'), string_to_table($6::text, E'\\x1e'), string_to_table($7::text, E'\\x1e', ''),
                       string_to_table($8::text, E'\\x1e'), string_to_table($9::text, E'\\x1e')) WITH ORDINALITY
         AS r (source_id, version_id, last_updated_ms, content_hash, body, n)`;
/** Inserts every record (the batch has no repeated version); refused (23505) at the first one already stored. */
const INSERT_ALL = `${INSERT_RECORDS}
       ORDER BY n`;
/**
 * Inserts the versions not stored yet; refused (23505) if another transaction commits one meanwhile. `OFFSET 0`
 * keeps the check a lookup of each record's identity in the unique key: as an anti join, the planner reads all the
 * connector's stored records of the type for every batch (a fresh table's estimates).
 */
const INSERT_NEW = `${INSERT_RECORDS}
       WHERE NOT EXISTS (SELECT FROM source_records s WHERE s.practice_id = $1::uuid AND s.connector = $2::text AND s.resource_type = $4::text
                           AND s.source_id = r.source_id AND s.version_id = r.version_id OFFSET 0)
       ORDER BY n`;
/** Inserts the versions not stored yet, skipping whatever version is stored, whenever it was committed. */
const INSERT_SKIPPING_STORED = `${INSERT_RECORDS}
       ORDER BY n
       ON CONFLICT ON CONSTRAINT source_records_identity_key DO NOTHING`;
/** What {@link SourceRecordRepository.storeGroup} tries, in order, for a batch of {@link FAST_PATH_MIN_RECORDS} or more. */
const STORE_STATEMENTS = [INSERT_ALL, INSERT_NEW, INSERT_SKIPPING_STORED] as const;
/**
 * Versions from which a batch is worth the savepoint the cheaper statements need (two more statements: a round trip
 * each, about 0.3 ms each on the embedded database) for the ~7 µs a version they save on the server; a smaller batch
 * (an HL7 message's few records, a short page) goes straight to `ON CONFLICT DO NOTHING`.
 */
const FAST_PATH_MIN_RECORDS = 200;

function clampLimit(limit: number | undefined): number {
  return Math.max(1, Math.min(1000, Math.trunc(limit ?? 100)));
}

/** Reads and writes source records and the quarantine. */
export class SourceRecordRepository {
  private readonly db: Queryable;
  private readonly clock: Clock;
  /**
   * @param db - where reads go (the pool); writes take their transaction explicitly.
   */
  constructor(db: Queryable, clock: Clock) {
    this.db = db;
    this.clock = clock;
  }

  /**
   * Stores records with status `pending`, each version once: a record whose (practice, connector, resource type,
   * source id, version id) is already stored — earlier, or earlier in the same batch — is skipped. One statement per
   * (practice, connector, transport, resource type) in the batch (a connector's batch has one): those four travel
   * once, as scalars, the other columns each as one text parameter (the values separated by U+001E, which valid JSON
   * never contains and which no id, version, hash or instant may contain). Bodies are stored as text, exactly as given.
   * @param tx - the transaction the records belong to (or the pool, for a write of its own).
   * @returns how many were new.
   */
  async storeMany(tx: Queryable, records: readonly NewSourceRecord[]): Promise<number> {
    let stored = 0;
    for (const group of sameSourceGroups(records)) stored += await this.storeGroup(tx, group);
    return stored;
  }

  /**
   * Stores records of one practice, connector, transport and resource type, in order (see {@link storeMany}).
   *
   * The batch's repeated versions are dropped here (the first one kept). A batch of fewer than
   * {@link FAST_PATH_MIN_RECORDS} versions is stored by statement 3 below, alone. A larger one (a Bulk batch, a full
   * page) runs the cheapest statement that can do the job, the next one run instead when the identity key refuses it (23505): in a
   * transaction block, under a savepoint that undoes the refused one; outside one (the pool, or a connection between transactions,
   * as the Bulk import's writers store), each statement commits alone and a refused one changed nothing:
   * 1. a plain insert, all a batch of new versions (a first load) needs: each identity is looked up once, as it is
   * inserted into the key; refused at the first version already stored. 2. an insert of the versions no row has yet
   * (`NOT EXISTS`: one more lookup per line, but no speculative insertion, which cost about as much again); refused
   * only when another transaction commits one of them meanwhile (an incremental sync of the same connector at that
   * moment). 3. `ON CONFLICT DO NOTHING`, which skips whatever is stored, whenever it was committed.
   */
  private async storeGroup(tx: Queryable, records: readonly NewSourceRecord[]): Promise<number> {
    const first = records[0]!;
    const versions = firstOfEachVersion(records);
    const values = [
      first.practiceId,
      first.connector,
      first.transport,
      first.resourceType,
      joinedText(versions, 'source id', (r) => r.sourceId),
      joinedText(versions, 'version id', (r) => r.versionId),
      joinedText(versions, 'lastUpdated', epochMsText),
      joinedText(versions, 'content hash', (r) => r.contentHash),
      joinedBodies(versions),
      this.clock.now(),
    ];
    if (versions.length < FAST_PATH_MIN_RECORDS) return (await tx.query(INSERT_SKIPPING_STORED, values)).rowCount ?? 0;
    // Outside a transaction block (the pool, a connection between transactions), a refused statement changed nothing.
    const inTransaction = (tx as Partial<pg.ClientBase>).getTransactionStatus?.() === 'T';
    if (inTransaction) await tx.query('SAVEPOINT settle_store_records');
    for (const [attempt, statement] of STORE_STATEMENTS.entries()) {
      try {
        const stored = (await tx.query(statement, values)).rowCount ?? 0;
        if (inTransaction) await tx.query('RELEASE SAVEPOINT settle_store_records');
        return stored;
      } catch (error) {
        if (!isIdentityConflict(error) || attempt === STORE_STATEMENTS.length - 1) throw error;
        if (inTransaction) await tx.query('ROLLBACK TO SAVEPOINT settle_store_records');
      }
    }
    throw new Error('unreachable: the last statement returns or throws');
  }

  /** Quarantines one input. @returns the entry's id. */
  async quarantine(tx: Queryable, entry: NewQuarantineEntry): Promise<string> {
    return (await this.quarantineEntries(tx, [entry]))[0]!;
  }

  /** Quarantines several inputs, in order, in one statement (plus one to flag the source records named). @returns how many. */
  async quarantineMany(tx: Queryable, entries: readonly NewQuarantineEntry[]): Promise<number> {
    return (await this.quarantineEntries(tx, entries)).length;
  }

  private async quarantineEntries(tx: Queryable, entries: readonly NewQuarantineEntry[]): Promise<string[]> {
    if (entries.length === 0) return [];
    const { rows } = await tx.query<{ id: string }>(
      `INSERT INTO quarantine (practice_id, connector, resource_type, source_id, source_record_id, raw, outcome, created_at)
       SELECT e.practice_id, e.connector, e.resource_type, e.source_id, e.source_record_id, e.raw, e.outcome, $8
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::jsonb[]) WITH ORDINALITY
         AS e (practice_id, connector, resource_type, source_id, source_record_id, raw, outcome, n)
       ORDER BY n
       RETURNING id::text AS id`,
      [
        entries.map((e) => e.practiceId),
        entries.map((e) => e.connector),
        entries.map((e) => e.resourceType),
        entries.map((e) => e.sourceId ?? null),
        entries.map((e) => e.sourceRecordId ?? null),
        entries.map((e) => e.raw),
        entries.map((e) => JSON.stringify(e.outcome)),
        this.clock.now(),
      ],
    );
    const flagged = entries.filter((e) => e.sourceRecordId);
    for (const practiceId of new Set(flagged.map((e) => e.practiceId))) {
      const ids = flagged.filter((e) => e.practiceId === practiceId).map((e) => e.sourceRecordId);
      await tx.query(`UPDATE source_records SET status = 'quarantined' WHERE practice_id = $1 AND id = ANY($2::bigint[])`, [practiceId, ids]);
    }
    return rows.map((r) => r.id);
  }

  /** One version of a record by its identity, as the source named it. */
  async findVersion(key: { practiceId: string; connector: string; resourceType: string; sourceId: string; versionId: string }): Promise<StoredSourceRecord | undefined> {
    const { rows } = await this.db.query<RecordRow>(
      `SELECT ${RECORD_COLUMNS} FROM source_records
        WHERE practice_id = $1 AND connector = $2 AND resource_type = $3 AND source_id = $4 AND version_id = $5`,
      [key.practiceId, key.connector, key.resourceType, key.sourceId, key.versionId],
    );
    return rows[0] && toRecord(rows[0]);
  }

  /** One record of a practice. */
  async get(practiceId: string, id: string): Promise<StoredSourceRecord | undefined> {
    if (!/^\d{1,19}$/.test(id)) return undefined;
    const { rows } = await this.db.query<RecordRow>(`SELECT ${RECORD_COLUMNS} FROM source_records WHERE practice_id = $1 AND id = $2`, [practiceId, id]);
    return rows[0] && toRecord(rows[0]);
  }

  /** The stored versions of one source resource, oldest first. */
  async versions(practiceId: string, connector: string, resourceType: string, sourceId: string): Promise<StoredSourceRecord[]> {
    const { rows } = await this.db.query<RecordRow>(
      `SELECT ${RECORD_COLUMNS} FROM source_records WHERE practice_id = $1 AND connector = $2 AND resource_type = $3 AND source_id = $4 ORDER BY source_records.id`,
      [practiceId, connector, resourceType, sourceId],
    );
    return rows.map(toRecord);
  }

  /**
   * A practice's records in arrival order, filtered, a page at a time.
   * @param filter.after - the `next` of the previous page.
   */
  async list(
    practiceId: string,
    filter: { connector?: string; resourceType?: string; status?: SourceRecordStatus; limit?: number; after?: string } = {},
  ): Promise<Page<StoredSourceRecord>> {
    const limit = clampLimit(filter.limit);
    const { rows } = await this.db.query<RecordRow>(
      `SELECT ${RECORD_COLUMNS} FROM source_records
       WHERE practice_id = $1 AND ($2::text IS NULL OR connector = $2) AND ($3::text IS NULL OR resource_type = $3)
         AND ($4::text IS NULL OR status = $4) AND ($5::bigint IS NULL OR id > $5)
       ORDER BY source_records.id LIMIT $6`,
      [practiceId, filter.connector ?? null, filter.resourceType ?? null, filter.status ?? null, cursor(filter.after), limit + 1],
    );
    const items = rows.slice(0, limit).map(toRecord);
    return rows.length > limit ? { items, next: items.at(-1)!.id } : { items };
  }

  /** The oldest pending records of a practice (what ingest takes next). */
  async pending(practiceId: string, limit = 100): Promise<StoredSourceRecord[]> {
    return (await this.list(practiceId, { status: 'pending', limit })).items;
  }

  /**
   * Takes the oldest pending records of a practice for this transaction (`FOR UPDATE SKIP LOCKED`): concurrent
   * runs take disjoint records, and a record stays pending if the transaction rolls back.
   */
  async claimPending(tx: Queryable, practiceId: string, limit: number): Promise<StoredSourceRecord[]> {
    const { rows } = await tx.query<RecordRow>(
      `SELECT ${RECORD_COLUMNS} FROM source_records WHERE practice_id = $1 AND status = 'pending' ORDER BY source_records.id LIMIT $2 FOR UPDATE SKIP LOCKED`,
      [practiceId, clampLimit(limit)],
    );
    return rows.map(toRecord);
  }

  /** Marks pending records quarantined (their OperationOutcome is in the ingest quarantine). @returns how many changed. */
  async markQuarantined(tx: Queryable, practiceId: string, ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const result = await tx.query(`UPDATE source_records SET status = 'quarantined' WHERE practice_id = $1 AND id = ANY($2::bigint[]) AND status = 'pending'`, [practiceId, ids]);
    return result.rowCount ?? 0;
  }

  /** Marks records ingested. @returns how many changed. */
  async markIngested(tx: Queryable, practiceId: string, ids: readonly string[], at: Date): Promise<number> {
    if (ids.length === 0) return 0;
    const result = await tx.query(
      `UPDATE source_records SET status = 'ingested', ingested_at = $3 WHERE practice_id = $1 AND id = ANY($2::bigint[]) AND status = 'pending'`,
      [practiceId, ids, at],
    );
    return result.rowCount ?? 0;
  }

  /** Per resource type, how many records a connector stored and where they are in ingest. */
  async counts(practiceId: string, connector: string): Promise<SourceRecordCounts[]> {
    const { rows } = await this.db.query<{ resource_type: string; total: number; pending: number; ingested: number; quarantined: number }>(
      `SELECT resource_type, count(*)::int AS total,
              count(*) FILTER (WHERE status = 'pending')::int AS pending,
              count(*) FILTER (WHERE status = 'ingested')::int AS ingested,
              count(*) FILTER (WHERE status = 'quarantined')::int AS quarantined
       FROM source_records WHERE practice_id = $1 AND connector = $2 GROUP BY resource_type ORDER BY resource_type`,
      [practiceId, connector],
    );
    return rows.map((r) => ({ resourceType: r.resource_type, total: r.total, pending: r.pending, ingested: r.ingested, quarantined: r.quarantined }));
  }

  /** A practice's quarantine, oldest first, a page at a time; open entries only unless `includeResolved`. */
  async listQuarantine(
    practiceId: string,
    filter: { connector?: string; includeResolved?: boolean; limit?: number; after?: string } = {},
  ): Promise<Page<QuarantineEntry>> {
    const limit = clampLimit(filter.limit);
    const { rows } = await this.db.query<QuarantineRow>(
      `SELECT ${QUARANTINE_COLUMNS} FROM quarantine
       WHERE practice_id = $1 AND ($2::text IS NULL OR connector = $2) AND ($3 OR resolved_at IS NULL) AND ($4::bigint IS NULL OR id > $4)
       ORDER BY quarantine.id LIMIT $5`,
      [practiceId, filter.connector ?? null, filter.includeResolved === true, cursor(filter.after), limit + 1],
    );
    const items = rows.slice(0, limit).map(toQuarantine);
    return rows.length > limit ? { items, next: items.at(-1)!.id } : { items };
  }

  /** Open quarantine entries of a connector. */
  async countOpenQuarantine(practiceId: string, connector: string): Promise<number> {
    const { rows } = await this.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM quarantine WHERE practice_id = $1 AND connector = $2 AND resolved_at IS NULL',
      [practiceId, connector],
    );
    return rows[0]?.n ?? 0;
  }

  /** Marks a quarantine entry resolved. @returns false when there is no such open entry. */
  async resolveQuarantine(practiceId: string, id: string, at: Date): Promise<boolean> {
    if (!/^\d{1,19}$/.test(id)) return false;
    const result = await this.db.query('UPDATE quarantine SET resolved_at = $3 WHERE practice_id = $1 AND id = $2 AND resolved_at IS NULL', [practiceId, id, at]);
    return (result.rowCount ?? 0) > 0;
  }
}

/** What a run did, as counted. */
export interface RunCounts {
  pages: number;
  resources: number;
  /** New source records stored. */
  stored: number;
  duplicates: number;
  quarantined: number;
}

/** One sync run of a connector. */
export interface ConnectorRun extends RunCounts {
  id: string;
  practiceId: string;
  connector: string;
  fullSync: boolean;
  startedAt: Date;
  /** When it ended; for an interrupted run, its last sign of life. */
  finishedAt: Date | null;
  /** `interrupted`: the process running it stopped without finishing it (killed, crashed, lost). */
  status: 'running' | 'succeeded' | 'failed' | 'interrupted';
  error: string | null;
}

interface RunRow {
  id: string;
  practice_id: string;
  connector: string;
  full_sync: boolean;
  started_at: Date;
  finished_at: Date | null;
  status: ConnectorRun['status'];
  pages: number;
  resources: number;
  stored: number;
  duplicates: number;
  quarantined: number;
  error: string | null;
}

const RUN_COLUMNS = 'id::text AS id, practice_id, connector, full_sync, started_at, finished_at, status, pages, resources, stored, duplicates, quarantined, error';

function toRun(row: RunRow): ConnectorRun {
  return {
    id: row.id,
    practiceId: row.practice_id,
    connector: row.connector,
    fullSync: row.full_sync,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    status: row.status,
    pages: row.pages,
    resources: row.resources,
    stored: row.stored,
    duplicates: row.duplicates,
    quarantined: row.quarantined,
    error: row.error,
  };
}

/** How often a running run's process proves it is alive. */
export const RUN_HEARTBEAT_MS = 30_000;
/** A run whose process has not proved it is alive for this long is taken for dead, wherever that process ran. */
export const RUN_LEASE_MS = 5 * RUN_HEARTBEAT_MS;

/** This process's runs still in progress, each with its heartbeat timer. */
const ownRuns = new Map<string, NodeJS.Timeout>();
const HOST = hostname();

/** Whether a process of this host is alive (signal 0 tests without signalling). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

/**
 * Records connector runs: the status `GET /connectors` shows. A run records the process running it and a heartbeat;
 * a run whose process is gone is marked `interrupted` when the connector's status is read or its next run starts,
 * so a dead run never shows as running.
 */
export class ConnectorRunRepository {
  private readonly db: Queryable;
  private readonly clock: Clock;
  constructor(db: Queryable, clock: Clock) {
    this.db = db;
    this.clock = clock;
  }

  /**
   * Records the start of a run by this process (first marking the connector's dead runs interrupted) and keeps
   * its heartbeat until {@link finish}. @returns its id.
   */
  async start(practiceId: string, connector: string, fullSync: boolean): Promise<string> {
    await this.interruptDead(practiceId, connector);
    const { rows } = await this.db.query<{ id: string }>(
      `INSERT INTO connector_runs (practice_id, connector, full_sync, started_at, owner_host, owner_pid, heartbeat_at)
       VALUES ($1, $2, $3, $4, $5, $6, now()) RETURNING id::text AS id`,
      [practiceId, connector, fullSync, this.clock.now(), HOST, process.pid],
    );
    const id = rows[0]!.id;
    const beat = setInterval(() => {
      this.db.query(`UPDATE connector_runs SET heartbeat_at = now() WHERE id = $1 AND status = 'running'`, [id]).catch(() => {}); // the next beat retries
    }, RUN_HEARTBEAT_MS);
    beat.unref();
    ownRuns.set(id, beat);
    return id;
  }

  /** Records how a run ended. `error` is an id-only diagnostic (never PHI). */
  async finish(id: string, counts: RunCounts, error?: string): Promise<void> {
    clearInterval(ownRuns.get(id));
    ownRuns.delete(id);
    await this.db.query(
      `UPDATE connector_runs SET finished_at = $2, status = $3, pages = $4, resources = $5, stored = $6, duplicates = $7, quarantined = $8, error = $9 WHERE id = $1`,
      [id, this.clock.now(), error === undefined ? 'succeeded' : 'failed', counts.pages, counts.resources, counts.stored, counts.duplicates, counts.quarantined, error ?? null],
    );
  }

  /**
   * Marks `interrupted` the connector's runs still `running` whose process is gone: this process's runs it no
   * longer runs, runs of a process of this host that no longer exists, and any run without a heartbeat for
   * {@link RUN_LEASE_MS} (measured on the database's clock). @returns how many.
   */
  async interruptDead(practiceId: string, connector: string): Promise<number> {
    const { rows } = await this.db.query<{ id: string; owner_host: string | null; owner_pid: number | null; last_seen: Date; stale: boolean }>(
      `SELECT id::text AS id, owner_host, owner_pid, coalesce(heartbeat_at, started_at) AS last_seen,
              coalesce(heartbeat_at, started_at) < now() - make_interval(secs => $3::double precision / 1000) AS stale
       FROM connector_runs WHERE practice_id = $1 AND connector = $2 AND status = 'running'`,
      [practiceId, connector, RUN_LEASE_MS],
    );
    let interrupted = 0;
    for (const run of rows) {
      const here = run.owner_host === HOST && run.owner_pid !== null;
      const gone = here && run.owner_pid === process.pid ? !ownRuns.has(run.id) : (here && !processAlive(run.owner_pid!)) || run.stale;
      if (!gone) continue;
      const owner = run.owner_host === null ? 'a process of an earlier Settle version' : `process ${run.owner_pid} on ${run.owner_host}`;
      const error = `interrupted: ${owner} stopped without finishing this run (last heartbeat ${run.last_seen.toISOString()}); the next run resumes from the checkpoints`;
      const result = await this.db.query(`UPDATE connector_runs SET status = 'interrupted', finished_at = $2, error = $3 WHERE id = $1 AND status = 'running'`, [run.id, run.last_seen, error]);
      interrupted += result.rowCount ?? 0;
    }
    return interrupted;
  }

  /** The latest run, the latest successful one and the latest failed (or interrupted) one of a connector. */
  async status(practiceId: string, connector: string): Promise<{ last?: ConnectorRun; lastSuccess?: ConnectorRun; lastFailure?: ConnectorRun }> {
    await this.interruptDead(practiceId, connector);
    const { rows } = await this.db.query<RunRow & { kind: string }>(
      `(SELECT 'last' AS kind, ${RUN_COLUMNS} FROM connector_runs WHERE practice_id = $1 AND connector = $2 ORDER BY connector_runs.id DESC LIMIT 1)
       UNION ALL
       (SELECT 'success' AS kind, ${RUN_COLUMNS} FROM connector_runs WHERE practice_id = $1 AND connector = $2 AND status = 'succeeded' ORDER BY connector_runs.id DESC LIMIT 1)
       UNION ALL
       (SELECT 'failure' AS kind, ${RUN_COLUMNS} FROM connector_runs WHERE practice_id = $1 AND connector = $2 AND status IN ('failed', 'interrupted') ORDER BY connector_runs.id DESC LIMIT 1)`,
      [practiceId, connector],
    );
    const of = (kind: string) => {
      const row = rows.find((r) => r.kind === kind);
      return row && toRun(row);
    };
    return { last: of('last'), lastSuccess: of('success'), lastFailure: of('failure') };
  }

  /** A connector's runs, newest first (dead ones marked interrupted first). */
  async list(practiceId: string, connector: string, limit = 20): Promise<ConnectorRun[]> {
    await this.interruptDead(practiceId, connector);
    const { rows } = await this.db.query<RunRow>(
      `SELECT ${RUN_COLUMNS} FROM connector_runs WHERE practice_id = $1 AND connector = $2 ORDER BY connector_runs.id DESC LIMIT $3`,
      [practiceId, connector, clampLimit(limit)],
    );
    return rows.map(toRun);
  }
}
