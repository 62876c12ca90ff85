/**
 * The ledger's posting rules, the one implementation for one source record ({@link LedgerRepository.postSource}
 * posts a batch of one) and for batches: the ledger lines of a batch of source record versions inserted
 * together and each touched balance recomputed once, as if the records were posted one after another in batch
 * order. Sources and balances are locked sorted, after the parties (`ledger-parties.ts`), so concurrent batches
 * on a server wait for each other instead of deadlocking. Writes run in the caller's transaction.
 */
import type { Clock } from '../domain/clock.ts';
import {
  ageItems,
  automaticStatus,
  balanceEffect,
  compareVersions,
  planPosting,
  type ActiveEntry,
  type BalanceStatus,
  type EntryKind,
  type LedgerLine,
  type PayerKind,
  type PostingPlan,
  type SourceVersion,
} from '../domain/ledger.ts';
import { MoneyError } from '../domain/money.ts';
import type { Queryable } from './database.ts';
import type { LedgerRepository } from './ledger.ts';
import { LedgerError, toSafe, type PostingResult, type PostingTarget } from './ledger-posting.ts';

/** What one source record version posts. */
export interface SourcePosting {
  version: SourceVersion;
  target: PostingTarget;
  lines: readonly LedgerLine[];
}

const sourceKey = (v: Pick<SourceVersion, 'connector' | 'resourceType' | 'sourceId'>): string => JSON.stringify([v.connector, v.resourceType, v.sourceId]);


/** Posts batches of source record versions. */
export class LedgerBatch {
  readonly #db: Queryable;
  readonly #clock: Clock;

  constructor(db: Queryable, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /**
   * Posts what each of these source record versions contributes: the same version twice or an older version
   * changes nothing; a newer one reverses the lines that changed or vanished and posts the new ones. The
   * sources must be distinct (split versions of one source into successive calls).
   * @throws LedgerError when any posting is refused (a currency mismatch, an invalid line); roll the
   *   transaction back, as some of the batch may already be written.
   */
  async postSources(practiceId: string, postings: readonly SourcePosting[]): Promise<PostingResult[]> {
    if (postings.length === 0) return [];
    if (new Set(postings.map((p) => sourceKey(p.version))).size !== postings.length) throw new Error('postSources takes each source once per call');
    for (const posting of postings) checkLines(posting.lines);
    const now = this.#clock.now();
    const versions = postings.map((p) => p.version);
    const { rows: sources } = await this.#db.query<{ n: string; version_id: string; last_updated: Date | null; inserted: boolean; seen: boolean }>(
      `WITH k AS (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS k (connector, resource_type, source_id, version_id, n)),
       s AS (
         INSERT INTO ledger_sources (practice_id, connector, resource_type, source_id, version_id, last_updated, updated_at)
         SELECT $1, connector, resource_type, source_id, '', NULL, $6 FROM k ORDER BY connector, resource_type, source_id
         ON CONFLICT (practice_id, connector, resource_type, source_id) DO UPDATE SET updated_at = ledger_sources.updated_at
         RETURNING connector, resource_type, source_id, version_id, last_updated, (xmax = 0) AS inserted)
       SELECT k.n::text AS n, s.version_id, s.last_updated, s.inserted,
              EXISTS (SELECT 1 FROM ledger_source_versions v WHERE v.practice_id = $1 AND v.connector = k.connector AND v.resource_type = k.resource_type
                      AND v.source_id = k.source_id AND v.version_id = k.version_id) AS seen
       FROM k JOIN s USING (connector, resource_type, source_id)`,
      [practiceId, versions.map((v) => v.connector), versions.map((v) => v.resourceType), versions.map((v) => v.sourceId), versions.map((v) => v.versionId), now],
    );
    const previous = new Array<(typeof sources)[number]>(postings.length);
    for (const row of sources) previous[Number(row.n) - 1] = row;
    const outcome = postings.map((p, n): PostingResult['outcome'] | 'post' => {
      const prior = previous[n]!;
      if (prior.seen) return 'duplicate';
      if (prior.version_id !== '' && compareVersions(p.version, { versionId: prior.version_id, lastUpdated: prior.last_updated }) < 0) return 'stale';
      return 'post';
    });
    const active = await this.#activeEntries(practiceId, postings.filter((_, n) => outcome[n] === 'post' && !previous[n]!.inserted).map((p) => p.version));
    const plans = postings.map((p, n): PostingPlan | null =>
      outcome[n] === 'post' ? planPosting(active.get(sourceKey(p.version)) ?? [], p.lines, p.target.accountId, p.target.guarantorId) : null,
    );
    const balanceIds = await this.#ensureBalances(practiceId, postings, plans);
    const touched = postings.map(() => new Set<string>());
    await this.#reverse(postings, plans, now, touched);
    await this.#insertLines(practiceId, postings, plans, balanceIds, now, touched);
    const results = postings.map((_, n): PostingResult => {
      const plan = plans[n];
      if (!plan) return { outcome: outcome[n] as 'duplicate' | 'stale', posted: 0, reversed: 0, balanceIds: [] };
      const changed = plan.post.length + plan.reverse.length > 0;
      return { outcome: changed ? 'posted' : 'unchanged', posted: plan.post.length, reversed: plan.reverse.length, balanceIds: [...touched[n]!] };
    });
    await this.#recordVersions(practiceId, postings, results, now);
    await this.#recompute(postings, touched, now);
    return results;
  }

  async #activeEntries(practiceId: string, versions: readonly SourceVersion[]): Promise<Map<string, ActiveEntry[]>> {
    const bySource = new Map<string, ActiveEntry[]>();
    if (versions.length === 0) return bySource;
    const { rows } = await this.#db.query<{
      connector: string; resource_type: string; source_id: string; id: string; line_key: string; kind: EntryKind; amount_minor: string; currency: string;
      service_date: string; payer: PayerKind; service_code: string | null; description: string | null; account_id: string; guarantor_id: string;
    }>(
      `SELECT e.source_connector AS connector, e.source_resource_type AS resource_type, e.source_id, e.id, e.line_key, e.kind, e.amount_minor::text AS amount_minor,
              e.currency, e.service_date::text AS service_date, e.payer, e.service_code, e.description, e.account_id, e.guarantor_id
       FROM unnest($2::text[], $3::text[], $4::text[]) AS k (connector, resource_type, source_id)
       JOIN ledger_entries e ON e.practice_id = $1 AND e.source_connector = k.connector AND e.source_resource_type = k.resource_type AND e.source_id = k.source_id
       WHERE e.reverses_entry_id IS NULL AND NOT EXISTS (SELECT 1 FROM ledger_entries r WHERE r.reverses_entry_id = e.id)
       ORDER BY e.seq`,
      [practiceId, versions.map((v) => v.connector), versions.map((v) => v.resourceType), versions.map((v) => v.sourceId)],
    );
    for (const r of rows) {
      const key = sourceKey({ connector: r.connector, resourceType: r.resource_type, sourceId: r.source_id });
      const list = bySource.get(key) ?? [];
      list.push({
        id: r.id, lineKey: r.line_key, kind: r.kind, amount: toSafe(r.amount_minor), currency: r.currency, serviceDate: r.service_date,
        payer: r.payer, serviceCode: r.service_code, description: r.description, accountId: r.account_id, guarantorId: r.guarantor_id,
      });
      bySource.set(key, list);
    }
    return bySource;
  }

  /**
   * Creates or locks the balance each posting posts to, once per (guarantor, account), recording the creation.
   * @returns per posting, its balance id (undefined when it posts no new line).
   * @throws LedgerError (`currency-mismatch`) when a posting's lines are not all in its balance's currency.
   */
  async #ensureBalances(practiceId: string, postings: readonly SourcePosting[], plans: readonly (PostingPlan | null)[]): Promise<(string | undefined)[]> {
    const wanted = new Map<string, { target: PostingTarget; currency: string }>();
    const balanceKey = (t: PostingTarget) => `${t.guarantorId}/${t.accountId}`;
    postings.forEach((p, n) => {
      const plan = plans[n];
      if (!plan || plan.post.length === 0) return;
      const currencies = new Set(plan.post.map((l) => l.amount.currency));
      if (currencies.size > 1) throw new LedgerError('currency-mismatch', `one record has lines in ${[...currencies].join(' and ')}: mixed currencies are an error`);
      const currency = [...currencies][0]!;
      const earlier = wanted.get(balanceKey(p.target));
      if (earlier && earlier.currency !== currency) {
        throw new LedgerError('currency-mismatch', `the balance is in ${earlier.currency}; a ${currency} amount cannot be added (mixed currencies are an error, never converted)`);
      }
      if (!earlier) wanted.set(balanceKey(p.target), { target: p.target, currency });
    });
    if (wanted.size === 0) return postings.map(() => undefined);
    const list = [...wanted.values()];
    const { rows } = await this.#db.query<{ id: string; guarantor_id: string; account_id: string; currency: string; inserted: boolean }>(
      `INSERT INTO balances (practice_id, guarantor_id, account_id, patient_id, currency, status_changed_at, created_at, updated_at)
       SELECT $1, b.g, b.a, b.p, b.c, $6, $6, $6 FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[]) AS b (g, a, p, c) ORDER BY b.g, b.a
       ON CONFLICT (practice_id, guarantor_id, account_id) DO UPDATE SET updated_at = balances.updated_at
       RETURNING id, guarantor_id, account_id, currency, (xmax = 0) AS inserted`,
      [practiceId, list.map((b) => b.target.guarantorId), list.map((b) => b.target.accountId), list.map((b) => b.target.patientId), list.map((b) => b.currency), this.#clock.now()],
    );
    const ids = new Map<string, string>();
    for (const row of rows) {
      const key = `${row.guarantor_id}/${row.account_id}`;
      const currency = wanted.get(key)!.currency;
      if (row.currency !== currency) {
        throw new LedgerError('currency-mismatch', `the balance is in ${row.currency}; a ${currency} amount cannot be added (mixed currencies are an error, never converted)`);
      }
      ids.set(key, row.id);
    }
    const created = rows.filter((r) => r.inserted).map((r) => r.id);
    if (created.length > 0) {
      await this.#db.query(
        `INSERT INTO balance_status_history (balance_id, from_status, to_status, hold_reason, actor, note, occurred_at)
         SELECT id, NULL, 'open', NULL, 'system:ingest', 'balance created', $2 FROM unnest($1::uuid[]) WITH ORDINALITY AS b (id, n) ORDER BY n`,
        [created, this.#clock.now()],
      );
    }
    return postings.map((p, n) => (plans[n]?.post.length ? ids.get(balanceKey(p.target)) : undefined));
  }

  async #reverse(postings: readonly SourcePosting[], plans: readonly (PostingPlan | null)[], now: Date, touched: Set<string>[]): Promise<void> {
    const ids: string[] = [];
    const versions: string[] = [];
    const owners: number[] = [];
    plans.forEach((plan, n) => {
      for (const entry of plan?.reverse ?? []) {
        ids.push(entry.id);
        versions.push(postings[n]!.version.versionId);
        owners.push(n);
      }
    });
    if (ids.length === 0) return;
    const { rows } = await this.#db.query<{ reverses_entry_id: string; balance_id: string }>(
      `INSERT INTO ledger_entries (practice_id, balance_id, account_id, guarantor_id, patient_id, kind, amount_minor, effect_minor, currency,
         service_date, payer, service_code, description, line_key, source_connector, source_resource_type, source_id, source_version,
         reverses_entry_id, posted_at)
       SELECT e.practice_id, e.balance_id, e.account_id, e.guarantor_id, e.patient_id, e.kind, -e.amount_minor, -e.effect_minor, e.currency,
         e.service_date, e.payer, e.service_code, e.description, e.line_key, e.source_connector, e.source_resource_type, e.source_id, r.version, e.id, $3
       FROM unnest($1::uuid[], $2::text[]) AS r (id, version) JOIN ledger_entries e ON e.id = r.id
       ORDER BY e.seq RETURNING reverses_entry_id, balance_id`,
      [ids, versions, now],
    );
    const ownerOf = new Map(ids.map((id, i) => [id, owners[i]!]));
    for (const row of rows) touched[ownerOf.get(row.reverses_entry_id)!]!.add(row.balance_id);
  }

  async #insertLines(
    practiceId: string,
    postings: readonly SourcePosting[],
    plans: readonly (PostingPlan | null)[],
    balanceIds: readonly (string | undefined)[],
    now: Date,
    touched: Set<string>[],
  ): Promise<void> {
    // Per posting once (its balance, target and version), per line only the line: less to send and parse.
    const owners: { posting: SourcePosting; balanceId: string }[] = [];
    const lines: { owner: number; line: LedgerLine }[] = [];
    plans.forEach((plan, n) => {
      if (!plan || plan.post.length === 0) return;
      owners.push({ posting: postings[n]!, balanceId: balanceIds[n]! });
      for (const line of plan.post) lines.push({ owner: owners.length, line });
      touched[n]!.add(balanceIds[n]!);
    });
    if (lines.length === 0) return;
    const line = <T>(pick: (l: LedgerLine) => T) => lines.map((l) => pick(l.line));
    const owner = <T>(pick: (o: (typeof owners)[number]) => T) => owners.map(pick);
    await this.#db.query(
      `INSERT INTO ledger_entries (practice_id, balance_id, account_id, guarantor_id, patient_id, kind, amount_minor, effect_minor, currency,
         service_date, payer, service_code, description, line_key, source_connector, source_resource_type, source_id, source_version, posted_at)
       SELECT $1, p.balance_id, p.account_id, p.guarantor_id, p.patient_id, l.kind, l.amount, l.effect, l.currency, l.service_date::date, l.payer,
         l.service_code, l.description, l.line_key, p.connector, p.resource_type, p.source_id, p.version, $2
       FROM unnest($3::int[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])
         WITH ORDINALITY AS l (owner, kind, amount, effect, currency, service_date, payer, service_code, description, line_key, n)
       JOIN unnest($13::uuid[], $14::uuid[], $15::uuid[], $16::uuid[], $17::text[], $18::text[], $19::text[], $20::text[])
         WITH ORDINALITY AS p (balance_id, account_id, guarantor_id, patient_id, connector, resource_type, source_id, version, n) ON p.n = l.owner
       ORDER BY l.n`,
      [
        practiceId, now,
        lines.map((l) => l.owner), line((l) => l.kind), line((l) => l.amount.amount), line((l) => balanceEffect(l.kind, l.amount.amount)), line((l) => l.amount.currency),
        line((l) => l.serviceDate), line((l) => l.payer), line((l) => l.serviceCode), line((l) => l.description), line((l) => l.lineKey),
        owner((o) => o.balanceId), owner((o) => o.posting.target.accountId), owner((o) => o.posting.target.guarantorId), owner((o) => o.posting.target.patientId),
        owner((o) => o.posting.version.connector), owner((o) => o.posting.version.resourceType), owner((o) => o.posting.version.sourceId), owner((o) => o.posting.version.versionId),
      ],
    );
  }

  /** Records each version's outcome; the source's current version advances unless the version was stale. */
  async #recordVersions(practiceId: string, postings: readonly SourcePosting[], results: readonly PostingResult[], now: Date): Promise<void> {
    const recorded = postings.map((p, n) => ({ version: p.version, outcome: results[n]!.outcome })).filter((r) => r.outcome !== 'duplicate');
    if (recorded.length === 0) return;
    const column = <T>(pick: (r: (typeof recorded)[number]) => T) => recorded.map(pick);
    await this.#db.query(
      `WITH r AS (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
                    AS r (connector, resource_type, source_id, version_id, last_updated, outcome)),
       v AS (
         INSERT INTO ledger_source_versions (practice_id, connector, resource_type, source_id, version_id, last_updated, outcome, received_at)
         SELECT $1, connector, resource_type, source_id, version_id, last_updated, outcome, $8 FROM r ON CONFLICT DO NOTHING)
       UPDATE ledger_sources s SET version_id = r.version_id, last_updated = r.last_updated, updated_at = $8
       FROM r WHERE r.outcome <> 'stale' AND s.practice_id = $1 AND s.connector = r.connector AND s.resource_type = r.resource_type AND s.source_id = r.source_id`,
      [
        practiceId, column((r) => r.version.connector), column((r) => r.version.resourceType), column((r) => r.version.sourceId),
        column((r) => r.version.versionId), column((r) => r.version.lastUpdated), column((r) => r.outcome), now,
      ],
    );
  }

  /** Recomputes each touched balance once from its entries (amounts, aging, automatic status and its history). */
  async #recompute(postings: readonly SourcePosting[], touched: readonly Set<string>[], now: Date): Promise<void> {
    const notes = new Map<string, string>();
    touched.forEach((ids, n) => {
      const v = postings[n]!.version;
      for (const id of ids) notes.set(id, `${v.connector}/${v.resourceType}/${v.sourceId} version ${v.versionId}`);
    });
    if (notes.size === 0) return;
    const ids = [...notes.keys()].sort();
    const { rows } = await this.#db.query<{ id: string; status: BalanceStatus; service_date: string | null; payer: PayerKind | null; effect: string | null }>(
      `SELECT b.id, b.status, e.service_date::text AS service_date, e.payer, e.effect::text AS effect
       FROM balances b
       LEFT JOIN LATERAL (SELECT service_date, payer, sum(effect_minor) AS effect FROM ledger_entries WHERE balance_id = b.id GROUP BY service_date, payer) e ON true
       WHERE b.id = ANY($1::uuid[])`,
      [ids],
    );
    const sums = new Map<string, { status: BalanceStatus; patient: number; insurance: number; items: { date: string; effect: number }[] }>();
    for (const row of rows) {
      const sum = sums.get(row.id) ?? { status: row.status, patient: 0, insurance: 0, items: [] };
      sums.set(row.id, sum);
      if (row.effect === null || row.service_date === null) continue;
      const effect = toSafe(row.effect);
      if (row.payer === 'patient') {
        sum.patient += effect;
        sum.items.push({ date: row.service_date, effect });
      } else sum.insurance += effect;
    }
    const updates = ids.map((id) => {
      const sum = sums.get(id)!;
      if (!Number.isSafeInteger(sum.patient) || !Number.isSafeInteger(sum.insurance)) throw new MoneyError('out-of-range', 'balance beyond the safe integer range');
      return { id, ...sum, oldest: ageItems(sum.items, '9999-12-31').oldestOpenDate, next: automaticStatus(sum.status, sum.patient), note: notes.get(id)! };
    });
    const column = <T>(pick: (u: (typeof updates)[number]) => T) => updates.map(pick);
    await this.#db.query(
      `WITH u AS (SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::date[], $5::text[], $6::text[], $7::text[])
                    WITH ORDINALITY AS u (id, patient, insurance, oldest, next, current, note, n)),
       h AS (
         INSERT INTO balance_status_history (balance_id, from_status, to_status, hold_reason, actor, note, occurred_at)
         SELECT id, current, next, NULL, 'system:ingest', note, $8 FROM u WHERE next <> current ORDER BY n)
       UPDATE balances b SET patient_amount_minor = u.patient, insurance_amount_minor = u.insurance, oldest_open_date = u.oldest, updated_at = $8,
         status = u.next, status_changed_at = CASE WHEN b.status = u.next THEN b.status_changed_at ELSE $8 END
       FROM u WHERE b.id = u.id`,
      [column((u) => u.id), column((u) => u.patient), column((u) => u.insurance), column((u) => u.oldest), column((u) => u.next), column((u) => u.status), column((u) => u.note), now],
    );
  }
}

/** @throws LedgerError (`invalid-line`) for a line key used twice in one record or an unsafe amount. */
function checkLines(lines: readonly LedgerLine[]): void {
  const keys = new Set<string>();
  for (const line of lines) {
    if (keys.has(line.lineKey)) throw new LedgerError('invalid-line', `line key "${line.lineKey}" appears twice in one record`);
    keys.add(line.lineKey);
    if (!Number.isSafeInteger(line.amount.amount)) throw new LedgerError('invalid-line', `line ${line.lineKey}: amount is not a safe integer`);
  }
}
