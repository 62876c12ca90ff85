/**
 * The ledger's posting rules, the one implementation for one source record ({@link LedgerRepository.postSource}
 * posts a batch of one) and for batches: the ledger lines of a batch of source record versions inserted
 * together and each touched balance recomputed once (a balance or source the batch creates is inserted with its
 * final values instead), as if the records were posted one after another in batch order. Sources and balances are locked sorted, after the parties (`ledger-parties.ts`), so concurrent batches
 * on a server wait for each other instead of deadlocking. Writes run in the caller's transaction.
 */
import type { Clock } from '../domain/clock.ts';
import {
  automaticStatus,
  balanceEffect,
  compareVersions,
  oldestOpenDate,
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
import { lockExisting, readLocked } from './ledger-lock.ts';
import { arrayLiteral, SqlParams } from './sql-params.ts';
import { timeOrderedIds } from './time-ordered-id.ts';
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
    // A source seen for the first time is inserted with this version and its lines' guarantor and account already
    // (nothing to compare it with, so it posts them all): only sources that existed before have their version advanced
    // afterwards (#versionsCte).
    const previous = await this.#lockSources(practiceId, postings, now);
    const outcome = postings.map((p, n): PostingResult['outcome'] | 'post' => {
      const prior = previous[n]!;
      if (prior.inserted) return 'post';
      if (prior.seen) return 'duplicate';
      if (compareVersions(p.version, { versionId: prior.versionId, lastUpdated: prior.lastUpdated }) < 0) return 'stale';
      return 'post';
    });
    const active = await this.#activeEntries(practiceId, postings.filter((_, n) => outcome[n] === 'post' && !previous[n]!.inserted).map((p) => p.version));
    const plans = postings.map((p, n): PostingPlan | null =>
      outcome[n] === 'post' ? planPosting(active.get(sourceKey(p.version)) ?? [], p.lines, p.target.accountId, p.target.guarantorId) : null,
    );
    const { balanceIds, created } = await this.#ensureBalances(practiceId, postings, plans);
    const touched = postings.map(() => new Set<string>());
    await this.#reverse(postings, plans, now, touched);
    plans.forEach((plan, n) => {
      if (plan && plan.post.length > 0) touched[n]!.add(balanceIds[n]!);
    });
    const results = postings.map((_, n): PostingResult => {
      const plan = plans[n];
      if (!plan) return { outcome: outcome[n] as 'duplicate' | 'stale', posted: 0, reversed: 0, balanceIds: [] };
      const changed = plan.post.length + plan.reverse.length > 0;
      return { outcome: changed ? 'posted' : 'unchanged', posted: plan.post.length, reversed: plan.reverse.length, balanceIds: [...touched[n]!] };
    });
    // One statement writes the lines and the versions and reads what the touched balances' entries summed to before
    // it (its snapshot: the reversals above, not its own lines); the new lines' effects are added here.
    const notes = new Map<string, string>();
    touched.forEach((ids, n) => {
      for (const id of ids) if (!created.has(id)) notes.set(id, versionNote(postings[n]!.version));
    });
    const recompute = [...notes.keys()].sort();
    const statement = new SqlParams();
    const versionCtes = this.#versionsCte(statement, practiceId, postings, results, previous.map((p) => p.inserted), plans, now);
    const lines = this.#linesCte(statement, practiceId, postings, plans, balanceIds, now);
    const ctes = [...versionCtes, ...(lines ? [`lines AS (${lines})`] : [])];
    if (ctes.length === 0 && recompute.length === 0) return results;
    const sums = recompute.length === 0 ? 'SELECT NULL::uuid AS id WHERE false' : this.#sumsQuery(statement, recompute);
    const { rows } = await this.#db.query<SumsRow>(`${ctes.length ? `WITH ${ctes.join(',\n')}\n` : ''}${sums}`, statement.values);
    await this.#recompute(rows, newLines(plans, balanceIds, notes), recompute, notes, now);
    return results;
  }

  /**
   * Creates (with this version, and the guarantor and account its lines go to: a new source posts them all) or locks
   * each posting's source, in key order ({@link lockExisting}). @returns per posting, whether this call created its
   * source, else its source's current version and whether this version was seen before.
   */
  async #lockSources(practiceId: string, postings: readonly SourcePosting[], now: Date): Promise<PriorSource[]> {
    const versions = postings.map((p) => p.version);
    const column = (of: readonly SourceVersion[], pick: (v: SourceVersion) => string | null) => arrayLiteral(of.map(pick));
    const { rows } = await this.#db.query<{ connector: string; resource_type: string; source_id: string }>(
      `INSERT INTO ledger_sources (practice_id, connector, resource_type, source_id, version_id, last_updated, guarantor_id, account_id, updated_at)
       SELECT $1, connector, resource_type, source_id, version_id, last_updated, guarantor_id, account_id, $7
       FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $8::uuid[], $9::uuid[])
         AS k (connector, resource_type, source_id, version_id, last_updated, guarantor_id, account_id)
       ORDER BY connector, resource_type, source_id
       ON CONFLICT (practice_id, connector, resource_type, source_id) ${lockExisting('ledger_sources')}
       RETURNING connector, resource_type, source_id`,
      [
        practiceId, column(versions, (v) => v.connector), column(versions, (v) => v.resourceType), column(versions, (v) => v.sourceId), column(versions, (v) => v.versionId),
        column(versions, timestamp), now, arrayLiteral(postings.map((p) => p.target.guarantorId)), arrayLiteral(postings.map((p) => p.target.accountId)),
      ],
    );
    const inserted = new Set(rows.map((r) => sourceKey({ connector: r.connector, resourceType: r.resource_type, sourceId: r.source_id })));
    const prior = versions.map((): PriorSource => ({ inserted: true, seen: false, versionId: '', lastUpdated: null }));
    const current = await readLocked('ledger_sources', new Map(versions.map((v, n) => [sourceKey(v), n])), inserted, (existing) => {
      const locked = existing.map((n) => versions[n]!);
      return this.#db.query<{ n: string; version_id: string; last_updated: Date | null; seen: boolean }>(
        `SELECT k.n::text AS n, s.version_id, s.last_updated,
                EXISTS (SELECT 1 FROM ledger_source_versions v WHERE v.practice_id = $1 AND v.connector = k.connector AND v.resource_type = k.resource_type
                        AND v.source_id = k.source_id AND v.version_id = k.version_id) AS seen
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int[]) AS k (connector, resource_type, source_id, version_id, n)
         JOIN ledger_sources s ON s.practice_id = $1 AND s.connector = k.connector AND s.resource_type = k.resource_type AND s.source_id = k.source_id`,
        [practiceId, column(locked, (v) => v.connector), column(locked, (v) => v.resourceType), column(locked, (v) => v.sourceId), column(locked, (v) => v.versionId), arrayLiteral(existing)],
      );
    });
    for (const row of current) prior[Number(row.n)] = { inserted: false, seen: row.seen, versionId: row.version_id, lastUpdated: row.last_updated };
    return prior;
  }

  /**
   * The active entries (not reversed) of sources posted before, by source key. They are read through each source's
   * balance (its key in `ledger_sources`: the guarantor and account of its latest posted lines; every active entry of
   * a source lies on that balance, see migration 0038), the balance's entries filtered by source: no index of every
   * entry by source to keep up.
   */
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
       JOIN ledger_sources s ON s.practice_id = $1 AND s.connector = k.connector AND s.resource_type = k.resource_type AND s.source_id = k.source_id
       JOIN balances b ON b.practice_id = $1 AND b.guarantor_id = s.guarantor_id AND b.account_id = s.account_id
       JOIN ledger_entries e ON e.balance_id = b.id AND e.source_connector = k.connector AND e.source_resource_type = k.resource_type AND e.source_id = k.source_id
       WHERE e.reverses_entry_id IS NULL AND NOT EXISTS (SELECT 1 FROM ledger_entries r WHERE r.reverses_entry_id = e.id)
       ORDER BY e.seq`,
      [practiceId, arrayLiteral(versions.map((v) => v.connector)), arrayLiteral(versions.map((v) => v.resourceType)), arrayLiteral(versions.map((v) => v.sourceId))],
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
   * Creates or locks the balance each posting posts to, once per (guarantor, account). A balance created here is
   * inserted with what this batch's lines make it (amounts, oldest open date, automatic status: {@link balanceState}),
   * its creation and any automatic status change recorded, so it needs no recomputing.
   * @returns per posting, its balance id (undefined when it posts no new line), and the balances created.
   * @throws LedgerError (`currency-mismatch`) when a posting's lines are not all in its balance's currency.
   */
  async #ensureBalances(
    practiceId: string,
    postings: readonly SourcePosting[],
    plans: readonly (PostingPlan | null)[],
  ): Promise<{ balanceIds: (string | undefined)[]; created: Set<string> }> {
    const wanted = new Map<string, { target: PostingTarget; currency: string; sums: EffectSums; note: string }>();
    const balanceKey = (t: PostingTarget) => `${t.guarantorId}/${t.accountId}`;
    postings.forEach((p, n) => {
      const plan = plans[n];
      if (!plan || plan.post.length === 0) return;
      const currency = plan.post[0]!.amount.currency;
      if (plan.post.some((l) => l.amount.currency !== currency)) {
        const currencies = new Set(plan.post.map((l) => l.amount.currency));
        throw new LedgerError('currency-mismatch', `one record has lines in ${[...currencies].join(' and ')}: mixed currencies are an error`);
      }
      const key = balanceKey(p.target);
      let balance = wanted.get(key);
      if (!balance) wanted.set(key, (balance = { target: p.target, currency, sums: new EffectSums(), note: '' }));
      if (balance.currency !== currency) {
        throw new LedgerError('currency-mismatch', `the balance is in ${balance.currency}; a ${currency} amount cannot be added (mixed currencies are an error, never converted)`);
      }
      balance.note = versionNote(p.version);
      for (const line of plan.post) balance.sums.of(line.serviceDate, line.payer).effect += balanceEffect(line.kind, line.amount.amount);
    });
    if (wanted.size === 0) return { balanceIds: postings.map(() => undefined), created: new Set() };
    const states = new Map([...wanted].map(([key, b]) => [key, balanceState('open', b.sums.list)]));
    const list = [...wanted].map(([key, b]) => ({ ...b, state: states.get(key)! }));
    const column = (pick: (b: (typeof list)[number]) => string | number | null) => arrayLiteral(list.map(pick));
    const { rows: inserted } = await this.#db.query<{ id: string; guarantor_id: string; account_id: string; currency: string }>(
      `INSERT INTO balances (practice_id, guarantor_id, account_id, patient_id, currency, patient_amount_minor, insurance_amount_minor, oldest_open_date, status,
         status_changed_at, created_at, updated_at)
       SELECT $1, b.g, b.a, b.p, b.c, b.patient, b.insurance, b.oldest, b.status, $10, $10, $10
       FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::bigint[], $7::bigint[], $8::date[], $9::text[])
         AS b (g, a, p, c, patient, insurance, oldest, status) ORDER BY b.g, b.a
       ON CONFLICT (practice_id, guarantor_id, account_id) ${lockExisting('balances')}
       RETURNING id, guarantor_id, account_id, currency`,
      [
        practiceId, column((b) => b.target.guarantorId), column((b) => b.target.accountId), column((b) => b.target.patientId), column((b) => b.currency),
        column((b) => b.state.patient), column((b) => b.state.insurance), column((b) => b.state.oldest), column((b) => b.state.next), this.#clock.now(),
      ],
    );
    const rows = inserted.map((row) => ({ ...row, inserted: true }));
    const locked = await readLocked('balances', new Map(list.map((b) => [balanceKey(b.target), b.target])), new Set(inserted.map((r) => `${r.guarantor_id}/${r.account_id}`)), (existing) =>
      this.#db.query<{ id: string; guarantor_id: string; account_id: string; currency: string }>(
        `SELECT b.id, b.guarantor_id, b.account_id, b.currency FROM unnest($2::uuid[], $3::uuid[]) AS k (g, a)
         JOIN balances b ON b.practice_id = $1 AND b.guarantor_id = k.g AND b.account_id = k.a`,
        [practiceId, arrayLiteral(existing.map((t) => t.guarantorId)), arrayLiteral(existing.map((t) => t.accountId))],
      ));
    for (const row of locked) rows.push({ ...row, inserted: false });
    const ids = new Map<string, string>();
    const history: { id: string; from: BalanceStatus | null; to: BalanceStatus; note: string }[] = [];
    for (const row of rows) {
      const key = `${row.guarantor_id}/${row.account_id}`;
      const balance = wanted.get(key)!;
      if (row.currency !== balance.currency) {
        throw new LedgerError('currency-mismatch', `the balance is in ${row.currency}; a ${balance.currency} amount cannot be added (mixed currencies are an error, never converted)`);
      }
      ids.set(key, row.id);
      if (!row.inserted) continue;
      const { next } = states.get(key)!;
      history.push({ id: row.id, from: null, to: 'open', note: 'balance created' });
      if (next !== 'open') history.push({ id: row.id, from: 'open', to: next, note: balance.note });
    }
    if (history.length > 0) {
      await this.#db.query(
        `INSERT INTO balance_status_history (balance_id, from_status, to_status, hold_reason, actor, note, occurred_at)
         SELECT id, from_status, to_status, NULL, 'system:ingest', note, $5
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS h (id, from_status, to_status, note, n) ORDER BY n`,
        [arrayLiteral(history.map((h) => h.id)), arrayLiteral(history.map((h) => h.from)), arrayLiteral(history.map((h) => h.to)), arrayLiteral(history.map((h) => h.note)), this.#clock.now()],
      );
    }
    return {
      balanceIds: postings.map((p, n) => (plans[n]?.post.length ? ids.get(balanceKey(p.target)) : undefined)),
      created: new Set(history.map((h) => h.id)),
    };
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
      `INSERT INTO ledger_entries (id, practice_id, balance_id, account_id, guarantor_id, patient_id, kind, amount_minor, effect_minor, currency,
         service_date, payer, service_code, description, line_key, source_connector, source_resource_type, source_id, source_version,
         reverses_entry_id, posted_at)
       SELECT r.new_id, e.practice_id, e.balance_id, e.account_id, e.guarantor_id, e.patient_id, e.kind, -e.amount_minor, -e.effect_minor, e.currency,
         e.service_date, e.payer, e.service_code, e.description, e.line_key, e.source_connector, e.source_resource_type, e.source_id, r.version, e.id, $3
       FROM unnest($1::uuid[], $2::text[], $4::uuid[]) AS r (id, version, new_id) JOIN ledger_entries e ON e.id = r.id
       ORDER BY e.seq RETURNING reverses_entry_id, balance_id`,
      [arrayLiteral(ids), arrayLiteral(versions), now, arrayLiteral(timeOrderedIds(now, ids.length))],
    );
    const ownerOf = new Map(ids.map((id, i) => [id, owners[i]!]));
    for (const row of rows) touched[ownerOf.get(row.reverses_entry_id)!]!.add(row.balance_id);
  }

  /** The INSERT of the batch's new ledger lines (null when there are none). */
  #linesCte(
    statement: SqlParams,
    practiceId: string,
    postings: readonly SourcePosting[],
    plans: readonly (PostingPlan | null)[],
    balanceIds: readonly (string | undefined)[],
    now: Date,
  ): string | null {
    // Per posting once (its balance, target, version and currency: #ensureBalances refused a posting whose lines
    // mix currencies), per line only the line: less to send and parse. Thousands of lines per batch: each column is
    // gathered in one pass over the lines into an array of its final length and sent as an array literal
    // ({@link arrayLiteral}), several times cheaper than the driver's general array conversion.
    const owners = new PostingColumns();
    const lines = new LineColumns(plans.reduce((count, plan) => count + (plan?.post.length ?? 0), 0));
    plans.forEach((plan, n) => {
      if (!plan || plan.post.length === 0) return;
      owners.add(postings[n]!, balanceIds[n]!, plan.post[0]!.amount.currency);
      for (const line of plan.post) lines.add(owners.balance.length, line);
    });
    if (lines.kind.length === 0) return null;
    const param = (values: readonly (string | null)[]) => statement.add(arrayLiteral(values));
    // Integers and UUIDs are written as they are: their text needs no quoting in an array literal, nor a test for it.
    const plain = (values: readonly (number | string)[]) => statement.add(`{${values.join(',')}}`);
    // The lines' ids are made here ({@link timeOrderedIds}), not by the column's default (gen_random_uuid, a call per
    // row): ascending in line order, so they append to the primary key's index (as do reversals').
    const ids = plain(timeOrderedIds(now, lines.kind.length));
    return `INSERT INTO ledger_entries (id, practice_id, balance_id, account_id, guarantor_id, patient_id, kind, amount_minor, effect_minor, currency,
         service_date, payer, service_code, description, line_key, source_connector, source_resource_type, source_id, source_version, posted_at)
       SELECT l.id, ${statement.add(practiceId)}, p.balance_id, p.account_id, p.guarantor_id, p.patient_id, l.kind, l.amount, l.effect, p.currency, l.service_date::date, l.payer,
         l.service_code, l.description, l.line_key, p.connector, p.resource_type, p.source_id, p.version, ${statement.add(now)}
       FROM unnest(${plain(lines.owner)}::int[], ${param(lines.kind)}::text[], ${plain(lines.amount)}::bigint[], ${plain(lines.effect)}::bigint[],
         ${param(lines.serviceDate)}::text[], ${param(lines.payer)}::text[], ${param(lines.serviceCode)}::text[], ${param(lines.description)}::text[],
         ${param(lines.lineKey)}::text[], ${ids}::uuid[])
         WITH ORDINALITY AS l (owner, kind, amount, effect, service_date, payer, service_code, description, line_key, id, n)
       JOIN unnest(${plain(owners.balance)}::uuid[], ${plain(owners.account)}::uuid[], ${plain(owners.guarantor)}::uuid[], ${param(owners.patient)}::uuid[],
         ${param(owners.connector)}::text[], ${param(owners.resourceType)}::text[], ${param(owners.sourceId)}::text[], ${param(owners.version)}::text[],
         ${param(owners.currency)}::text[])
         WITH ORDINALITY AS p (balance_id, account_id, guarantor_id, patient_id, connector, resource_type, source_id, version, currency, n) ON p.n = l.owner
       ORDER BY l.n`;
  }

  /**
   * The CTEs that record each version's outcome and advance its source's current version, unless the version was
   * stale (or the source was `inserted` by this batch, with its version and balance already), moving the source to
   * the balance its new lines go to (one that posts no new line leaves its source's balance as it was, see
   * {@link #activeEntries}). None when there is nothing to record.
   */
  #versionsCte(
    statement: SqlParams,
    practiceId: string,
    postings: readonly SourcePosting[],
    results: readonly PostingResult[],
    inserted: readonly boolean[],
    plans: readonly (PostingPlan | null)[],
    now: Date,
  ): string[] {
    const recorded = postings
      .map((p, n) => ({ version: p.version, outcome: results[n]!.outcome, advance: !inserted[n] && results[n]!.outcome !== 'stale', moves: (plans[n]?.post.length ?? 0) > 0, target: p.target }))
      .filter((r) => r.outcome !== 'duplicate');
    if (recorded.length === 0) return [];
    const column = (pick: (r: (typeof recorded)[number]) => string | boolean | null) => statement.add(arrayLiteral(recorded.map(pick)));
    const practice = statement.add(practiceId);
    const at = statement.add(now);
    return [
      `versions AS (SELECT * FROM unnest(${column((r) => r.version.connector)}::text[], ${column((r) => r.version.resourceType)}::text[], ${column((r) => r.version.sourceId)}::text[],
         ${column((r) => r.version.versionId)}::text[], ${column((r) => timestamp(r.version))}::timestamptz[], ${column((r) => r.outcome)}::text[], ${column((r) => r.advance)}::boolean[],
         ${column((r) => (r.moves ? r.target.guarantorId : null))}::uuid[], ${column((r) => (r.moves ? r.target.accountId : null))}::uuid[])
         AS r (connector, resource_type, source_id, version_id, last_updated, outcome, advance, guarantor_id, account_id))`,
      `recorded AS (
         INSERT INTO ledger_source_versions (practice_id, connector, resource_type, source_id, version_id, last_updated, outcome, received_at)
         SELECT ${practice}, connector, resource_type, source_id, version_id, last_updated, outcome, ${at} FROM versions ON CONFLICT DO NOTHING)`,
      `advanced AS (
         UPDATE ledger_sources s SET version_id = r.version_id, last_updated = r.last_updated, updated_at = ${at},
           guarantor_id = coalesce(r.guarantor_id, s.guarantor_id), account_id = coalesce(r.account_id, s.account_id)
         FROM versions r WHERE r.advance AND s.practice_id = ${practice} AND s.connector = r.connector AND s.resource_type = r.resource_type AND s.source_id = r.source_id)`,
    ];
  }

  /**
   * What each balance to recompute was before this statement: its status and its entries' effects per service
   * date and payer (the statement's own new lines are not in its snapshot: {@link newLines} are added to them).
   */
  #sumsQuery(statement: SqlParams, ids: readonly string[]): string {
    const balances = statement.add(arrayLiteral(ids));
    // The entries are filtered by the list too, so that they are found by balance, not by a scan of the ledger.
    return `SELECT b.id, b.status, x.service_date::text AS service_date, x.payer, sum(x.effect_minor)::text AS effect
       FROM balances b LEFT JOIN ledger_entries x ON x.balance_id = b.id AND x.balance_id = ANY(${balances}::uuid[])
       WHERE b.id = ANY(${balances}::uuid[])
       GROUP BY b.id, b.status, x.service_date, x.payer`;
  }

  /**
   * Updates each recomputed balance from its entries' sums (amounts, aging, automatic status and its history):
   * every touched balance except those this batch created (inserted with what its lines make them). `rows` are the
   * sums read before the batch's lines, `added` those lines, whose effects are summed with them per service date and payer.
   */
  async #recompute(
    rows: readonly SumsRow[],
    added: ReadonlyMap<string, readonly LedgerLine[]>,
    ids: readonly string[],
    notes: ReadonlyMap<string, string>,
    now: Date,
  ): Promise<void> {
    if (ids.length === 0) return;
    const sums = new Map<string, { status: BalanceStatus; sums: EffectSums }>();
    const add = (to: EffectSums, serviceDate: string, payer: PayerKind, effect: number) => {
      const sum = to.of(serviceDate, payer);
      sum.effect = toSafe(sum.effect + effect);
    };
    for (const row of rows) {
      let balance = sums.get(row.id);
      if (!balance) sums.set(row.id, (balance = { status: row.status, sums: new EffectSums() }));
      if (row.effect !== null && row.service_date !== null && row.payer !== null) add(balance.sums, row.service_date, row.payer, toSafe(row.effect));
    }
    const updates = ids.map((id) => {
      const { status, sums: effects } = sums.get(id)!;
      for (const line of added.get(id) ?? []) add(effects, line.serviceDate, line.payer, balanceEffect(line.kind, line.amount.amount));
      return { id, status, ...balanceState(status, effects.list), note: notes.get(id)! };
    });
    const column = (pick: (u: (typeof updates)[number]) => string | number | null) => arrayLiteral(updates.map(pick));
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

/** The per-posting columns of {@link LedgerBatch}'s lines statement: a row per posting with lines, which name it by its ordinal (from 1). */
class PostingColumns {
  readonly balance: string[] = [];
  readonly account: string[] = [];
  readonly guarantor: string[] = [];
  readonly patient: (string | null)[] = [];
  readonly connector: string[] = [];
  readonly resourceType: string[] = [];
  readonly sourceId: string[] = [];
  readonly version: string[] = [];
  readonly currency: string[] = [];

  add({ target, version }: SourcePosting, balanceId: string, currency: string): void {
    this.balance.push(balanceId);
    this.account.push(target.accountId);
    this.guarantor.push(target.guarantorId);
    this.patient.push(target.patientId);
    this.connector.push(version.connector);
    this.resourceType.push(version.resourceType);
    this.sourceId.push(version.sourceId);
    this.version.push(version.versionId);
    this.currency.push(currency);
  }
}

/**
 * The per-line columns of {@link LedgerBatch}'s lines statement, each line's owner its posting's ordinal. Made at
 * their final length (the batch's count of lines), not grown line by line: every outgrown copy would be garbage.
 */
class LineColumns {
  readonly owner: number[];
  readonly kind: string[];
  readonly amount: number[];
  readonly effect: number[];
  readonly serviceDate: string[];
  readonly payer: string[];
  readonly serviceCode: (string | null)[];
  readonly description: (string | null)[];
  readonly lineKey: string[];
  #count = 0;

  constructor(lines: number) {
    this.owner = new Array<number>(lines);
    this.kind = new Array<string>(lines);
    this.amount = new Array<number>(lines);
    this.effect = new Array<number>(lines);
    this.serviceDate = new Array<string>(lines);
    this.payer = new Array<string>(lines);
    this.serviceCode = new Array<string | null>(lines);
    this.description = new Array<string | null>(lines);
    this.lineKey = new Array<string>(lines);
  }

  add(owner: number, line: LedgerLine): void {
    const n = this.#count++;
    this.owner[n] = owner;
    this.kind[n] = line.kind;
    this.amount[n] = line.amount.amount;
    this.effect[n] = balanceEffect(line.kind, line.amount.amount);
    this.serviceDate[n] = line.serviceDate;
    this.payer[n] = line.payer;
    this.serviceCode[n] = line.serviceCode;
    this.description[n] = line.description;
    this.lineKey[n] = line.lineKey;
  }
}

/** What a posting's source was before its batch ({@link LedgerBatch}'s #lockSources). */
interface PriorSource {
  /** Created by this batch, with the posting's version (the other fields are then unused). */
  inserted: boolean;
  /** This version was recorded before. */
  seen: boolean;
  versionId: string;
  lastUpdated: Date | null;
}

/** A row of {@link LedgerBatch}'s sums query: a balance's status and one (service date, payer) sum of its entries. */
interface SumsRow {
  id: string;
  status: BalanceStatus;
  service_date: string | null;
  payer: PayerKind | null;
  effect: string | null;
}

/** The effects of a balance's entries summed per service date and payer. */
interface EffectSum {
  serviceDate: string;
  payer: PayerKind;
  effect: number;
}

/**
 * A balance's {@link EffectSum}s, found by service date then payer: a line's date is looked up as it is, while a
 * key joining it with the payer would be a new string to hash for every line.
 */
class EffectSums {
  /** The sums, in the order their service date and payer first came. */
  readonly list: EffectSum[] = [];
  readonly #byDate = new Map<string, EffectSum[]>();

  /** @returns the sum of this service date and payer, a new one at 0 the first time. */
  of(serviceDate: string, payer: PayerKind): EffectSum {
    let sums = this.#byDate.get(serviceDate);
    if (!sums) this.#byDate.set(serviceDate, (sums = []));
    for (const sum of sums) if (sum.payer === payer) return sum;
    const sum = { serviceDate, payer, effect: 0 };
    sums.push(sum);
    this.list.push(sum);
    return sum;
  }
}

/**
 * The batch's new lines on each balance in `recompute` (those it did not create): what a recompute adds to the sums
 * it read, as its statement cannot see these lines.
 */
function newLines(plans: readonly (PostingPlan | null)[], balanceIds: readonly (string | undefined)[], recompute: ReadonlyMap<string, string>): Map<string, LedgerLine[]> {
  const added = new Map<string, LedgerLine[]>();
  plans.forEach((plan, n) => {
    const balanceId = balanceIds[n];
    if (!plan || balanceId === undefined || !recompute.has(balanceId)) return;
    let lines = added.get(balanceId);
    if (!lines) added.set(balanceId, (lines = []));
    for (const line of plan.post) lines.push(line);
  });
  return added;
}

/**
 * What a balance's entries make it: the patient and insurance amounts, the oldest open date (patient items aged
 * per service date) and the status it moves to by itself from `status`.
 * @throws MoneyError (`out-of-range`) beyond the safe integer range.
 */
function balanceState(status: BalanceStatus, sums: readonly EffectSum[]): { patient: number; insurance: number; oldest: string | null; next: BalanceStatus } {
  let patient = 0;
  let insurance = 0;
  const items: { date: string; effect: number }[] = [];
  for (const sum of sums) {
    if (sum.payer === 'patient') {
      patient += sum.effect;
      items.push({ date: sum.serviceDate, effect: sum.effect });
    } else insurance += sum.effect;
  }
  if (!Number.isSafeInteger(patient) || !Number.isSafeInteger(insurance)) throw new MoneyError('out-of-range', 'balance beyond the safe integer range');
  return { patient, insurance, oldest: oldestOpenDate(items), next: automaticStatus(status, patient) };
}

/** A version's lastUpdated as an array literal element (ISO 8601, read by timestamptz), or null. */
const timestamp = (v: SourceVersion): string | null => v.lastUpdated?.toISOString() ?? null;

/** How a balance's status history names the source record version that changed it. */
const versionNote = (v: SourceVersion): string => `${v.connector}/${v.resourceType}/${v.sourceId} version ${v.versionId}`;

/** @throws LedgerError (`invalid-line`) for a line key used twice in one record or an unsafe amount. */
function checkLines(lines: readonly LedgerLine[]): void {
  const keys = new Set<string>();
  for (const line of lines) {
    if (keys.has(line.lineKey)) throw new LedgerError('invalid-line', `line key "${line.lineKey}" appears twice in one record`);
    keys.add(line.lineKey);
    if (!Number.isSafeInteger(line.amount.amount)) throw new LedgerError('invalid-line', `line ${line.lineKey}: amount is not a safe integer`);
  }
}
