/**
 * Staff tasks: the worklist of things that need a person (disputes, assistance requests, unreachable contacts,
 * dead-lettered write-backs, quarantined records). Created by the stage that finds the problem, resolved by staff.
 */
import type { Clock } from '../domain/clock.ts';
import type { Queryable } from './database.ts';

/** What a task is about. */
export const STAFF_TASK_KINDS = ['dispute', 'assistance', 'undeliverable', 'writeback-failed', 'quarantine', 'other'] as const;
export type StaffTaskKind = (typeof STAFF_TASK_KINDS)[number];

/** One task. */
export interface StaffTask {
  id: string;
  practiceId: string;
  kind: StaffTaskKind;
  balanceId: string | null;
  guarantorId: string | null;
  note: string | null;
  subjectRef: string | null;
  status: 'open' | 'resolved';
  createdAt: Date;
  resolvedAt: Date | null;
  resolvedBy: string | null;
  resolution: string | null;
}

/** What is needed to open a task. */
export interface NewStaffTask {
  practiceId: string;
  kind: StaffTaskKind;
  balanceId?: string | null;
  guarantorId?: string | null;
  note?: string | null;
  subjectRef?: string | null;
}

interface Row {
  id: string;
  practice_id: string;
  kind: StaffTaskKind;
  balance_id: string | null;
  guarantor_id: string | null;
  note: string | null;
  subject_ref: string | null;
  status: 'open' | 'resolved';
  created_at: Date;
  resolved_at: Date | null;
  resolved_by: string | null;
  resolution: string | null;
}

const COLUMNS = 'id, practice_id, kind, balance_id, guarantor_id, note, subject_ref, status, created_at, resolved_at, resolved_by, resolution';

const toTask = (r: Row): StaffTask => ({
  id: r.id,
  practiceId: r.practice_id,
  kind: r.kind,
  balanceId: r.balance_id,
  guarantorId: r.guarantor_id,
  note: r.note,
  subjectRef: r.subject_ref,
  status: r.status,
  createdAt: r.created_at,
  resolvedAt: r.resolved_at,
  resolvedBy: r.resolved_by,
  resolution: r.resolution,
});

/** Reads and writes staff tasks. Pass a transaction client to open a task atomically with what caused it. */
export class StaffTaskRepository {
  private readonly db: Queryable;
  private readonly clock: Clock;
  constructor(db: Queryable, clock: Clock) {
    this.db = db;
    this.clock = clock;
  }

  /** Opens a task. */
  async open(task: NewStaffTask): Promise<StaffTask> {
    const { rows } = await this.db.query<Row>(
      `INSERT INTO staff_tasks (practice_id, kind, balance_id, guarantor_id, note, subject_ref, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${COLUMNS}`,
      [task.practiceId, task.kind, task.balanceId ?? null, task.guarantorId ?? null, task.note ?? null, task.subjectRef ?? null, this.clock.now()],
    );
    return toTask(rows[0]!);
  }

  /** Open tasks first, newest first; `status` and `kind` filter; `limit` (default 100) and `offset` page. */
  async list(practiceId: string, options: { status?: 'open' | 'resolved'; kind?: StaffTaskKind; limit?: number; offset?: number } = {}): Promise<StaffTask[]> {
    const { rows } = await this.db.query<Row>(
      `SELECT ${COLUMNS} FROM staff_tasks WHERE practice_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR kind = $3)
       ORDER BY status = 'open' DESC, seq DESC LIMIT $4 OFFSET $5`,
      [practiceId, options.status ?? null, options.kind ?? null, options.limit ?? 100, options.offset ?? 0],
    );
    return rows.map(toTask);
  }

  /** One task of a practice. */
  async get(practiceId: string, id: string): Promise<StaffTask | undefined> {
    const { rows } = await this.db.query<Row>(`SELECT ${COLUMNS} FROM staff_tasks WHERE practice_id = $1 AND id = $2`, [practiceId, id]);
    return rows[0] ? toTask(rows[0]) : undefined;
  }

  /** Resolves an open task; false when it does not exist or is already resolved. */
  async resolve(practiceId: string, id: string, by: string, resolution: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE staff_tasks SET status = 'resolved', resolved_at = $3, resolved_by = $4, resolution = $5
       WHERE practice_id = $1 AND id = $2 AND status = 'open'`,
      [practiceId, id, this.clock.now(), by, resolution],
    );
    return rowCount === 1;
  }
}
