/**
 * Practices repository.
 */
import type { Practice } from '../domain/practice.ts';
import type { Queryable } from './database.ts';

interface PracticeRow {
  id: string;
  slug: string;
  name: string;
  time_zone: string;
  phone: string | null;
  created_at: Date;
}

const COLUMNS = 'id, slug, name, time_zone, phone, created_at';

function toPractice(row: PracticeRow): Practice {
  return { id: row.id, slug: row.slug, name: row.name, timeZone: row.time_zone, phone: row.phone, createdAt: row.created_at };
}

/** What is needed to create a practice. */
export interface NewPractice {
  slug: string;
  name: string;
  timeZone?: string;
  phone?: string | null;
}

/** Reads and writes practices. */
export class PracticeRepository {
  private readonly db: Queryable;
  constructor(db: Queryable) {
    this.db = db;
  }

  /** Creates a practice. Fails when the slug is taken. */
  async create(practice: NewPractice): Promise<Practice> {
    const { rows } = await this.db.query<PracticeRow>(
      `INSERT INTO practices (slug, name, time_zone, phone) VALUES ($1, $2, coalesce($3, 'America/New_York'), $4) RETURNING ${COLUMNS}`,
      [practice.slug, practice.name, practice.timeZone ?? null, practice.phone ?? null],
    );
    return toPractice(rows[0]);
  }

  /** The practice with this slug, if any. */
  async findBySlug(slug: string): Promise<Practice | undefined> {
    const { rows } = await this.db.query<PracticeRow>(`SELECT ${COLUMNS} FROM practices WHERE slug = $1`, [slug]);
    return rows[0] && toPractice(rows[0]);
  }

  /** The practice with this id, if any. */
  async findById(id: string): Promise<Practice | undefined> {
    const { rows } = await this.db.query<PracticeRow>(`SELECT ${COLUMNS} FROM practices WHERE id = $1`, [id]);
    return rows[0] && toPractice(rows[0]);
  }

  /** Every practice, oldest first. */
  async list(): Promise<Practice[]> {
    const { rows } = await this.db.query<PracticeRow>(`SELECT ${COLUMNS} FROM practices ORDER BY created_at, slug`);
    return rows.map(toPractice);
  }

  /**
   * The practice with `slug`, created with `name` when missing. Safe when two processes call it at once.
   */
  async ensure(practice: NewPractice): Promise<Practice> {
    await this.db.query(
      `INSERT INTO practices (slug, name, time_zone, phone) VALUES ($1, $2, coalesce($3, 'America/New_York'), $4)
       ON CONFLICT (slug) DO NOTHING`,
      [practice.slug, practice.name, practice.timeZone ?? null, practice.phone ?? null],
    );
    const found = await this.findBySlug(practice.slug);
    if (!found) throw new Error(`practice ${practice.slug} vanished while being created`);
    return found;
  }
}
