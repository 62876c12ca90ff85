/**
 * Migration 0038: each ledger source keeps the key (guarantor, account) of the balance of its active entries, filled
 * from the ledger as it stood, and the index of every entry by source goes. Each case builds a ledger with the
 * migrations before 0038 (rows written as that schema takes them), then migrates.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import type { LedgerLine } from '../../src/domain/ledger.ts';
import { parseMoney } from '../../src/domain/money.ts';
import { withTransaction, type Database } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { currentVersion, loadMigrations, migrate } from '../../src/store/migrate.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { createTestDatabase, testEngines } from '../support/databases.ts';

const BEFORE = loadMigrations().filter((m) => m.version < 38);
const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
const clock = new ManualClock(new Date('2026-03-01T15:00:00Z'));

/** A ledger at migration 0037: a practice, a patient who is their own guarantor, accounts A and B with a balance each. */
async function ledgerBefore0038(db: Database) {
  const practiceId = (await new PracticeRepository(db.pool).create({ slug: 'm38', name: 'Migration 38', timeZone: 'America/Chicago' })).id;
  const ledger = new LedgerRepository(db.pool, cipher, clock);
  const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: 'P38' });
  const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
  const balanceOf = async (account: string) => {
    const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: account }, patientId });
    const { rows } = await db.pool.query<{ id: string }>(
      `INSERT INTO balances (practice_id, guarantor_id, account_id, patient_id, currency, patient_amount_minor, insurance_amount_minor, status, status_changed_at, created_at, updated_at)
       VALUES ($1, $2, $3, $4, 'USD', 0, 0, 'open', now(), now(), now()) RETURNING id`,
      [practiceId, guarantorId, accountId, patientId],
    );
    return { accountId, balanceId: rows[0]!.id };
  };
  const a = await balanceOf('A');
  const b = await balanceOf('B');
  /** An entry of a source on a balance (a reversal when `reverses` is given). @returns its id. */
  const entry = async (sourceId: string, on: { accountId: string; balanceId: string }, amount: number, reverses?: string) => {
    const { rows } = await db.pool.query<{ id: string }>(
      `INSERT INTO ledger_entries (practice_id, balance_id, account_id, guarantor_id, patient_id, kind, amount_minor, effect_minor, currency, service_date, payer,
         line_key, source_connector, source_resource_type, source_id, source_version, reverses_entry_id, posted_at)
       VALUES ($1, $2, $3, $4, $5, 'charge', $6, $6, 'USD', '2026-01-10', 'patient', 'lineItem/0', 'ehr', 'Invoice', $7, '1', $8, now()) RETURNING id`,
      [practiceId, on.balanceId, on.accountId, guarantorId, patientId, amount, sourceId, reverses ?? null],
    );
    return rows[0]!.id;
  };
  const source = (sourceId: string) =>
    db.pool.query(`INSERT INTO ledger_sources (practice_id, connector, resource_type, source_id, version_id, updated_at) VALUES ($1, 'ehr', 'Invoice', $2, '1', now())`, [practiceId, sourceId]);
  return { practiceId, ledger, patientId, guarantorId, a, b, entry, source };
}

/** The balance a source's key names (null when it names none). */
const balanceIdOf = async (db: Database, practiceId: string, sourceId: string) =>
  (await db.pool.query<{ balance_id: string | null }>(
    `SELECT b.id AS balance_id FROM ledger_sources s
     LEFT JOIN balances b ON b.practice_id = s.practice_id AND b.guarantor_id = s.guarantor_id AND b.account_id = s.account_id
     WHERE s.practice_id = $1 AND s.source_id = $2`,
    [practiceId, sourceId],
  )).rows[0]!.balance_id;
const sourceIndexExists = async (db: Database) =>
  (await db.pool.query<{ found: boolean }>(`SELECT to_regclass('ledger_entries_source_idx') IS NOT NULL AS found`)).rows[0]!.found;

for (const engine of testEngines()) {
  describe(`migration 0038: a ledger source's balance [${engine.name}]`, { skip: engine.skip }, () => {
    let handle: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
    let fixture: Awaited<ReturnType<typeof ledgerBefore0038>>;
    const db = () => handle!.db;
    before(async () => {
      handle = await createTestDatabase(engine.name, 5, BEFORE);
      fixture = await ledgerBefore0038(handle.db);
    });
    after(async () => {
      await handle?.drop();
    });

    it('stops, changing nothing, when a source has active entries on two balances, and names it', async () => {
      const { practiceId, a, b, entry, source } = fixture;
      await source('split');
      await entry('split', a, 1000);
      await entry('split', b, 2000);
      await assert.rejects(migrate(db()), /Migration 38 ledger_sources_balance failed: source ehr\/Invoice\/split of practice .* has active ledger entries on 2 balances/);
      assert.equal(await currentVersion(db()), 37);
      assert.equal(await sourceIndexExists(db()), true);
      // Put right (as an operator would: one of them reversed), it migrates.
      const { rows } = await db().pool.query<{ id: string }>(`SELECT id FROM ledger_entries WHERE practice_id = $1 AND source_id = 'split' AND balance_id = $2`, [practiceId, a.balanceId]);
      await entry('split', a, -1000, rows[0]!.id);
    });

    it('gives each source the balance of its active entries, none when all are reversed, and drops the index by source', async () => {
      const { practiceId, ledger, patientId, guarantorId, a, b, entry, source } = fixture;
      // moved: posted on A, reversed there, posted again on B. gone: posted on A, reversed. stays: posted on A.
      for (const id of ['moved', 'gone', 'stays']) await source(id);
      await entry('moved', a, -1500, await entry('moved', a, 1500));
      const onB = await entry('moved', b, 1500);
      await entry('gone', a, -700, await entry('gone', a, 700));
      await entry('stays', a, 300);
      await migrate(db());
      assert.equal(await balanceIdOf(db(), practiceId, 'moved'), b.balanceId);
      assert.equal(await balanceIdOf(db(), practiceId, 'gone'), null);
      assert.equal(await balanceIdOf(db(), practiceId, 'stays'), a.balanceId);
      assert.equal(await balanceIdOf(db(), practiceId, 'split'), b.balanceId, 'the source of the first case, put right');
      assert.equal(await sourceIndexExists(db()), false);

      // Posting finds the moved source's entry on B: a new version reverses it once and posts its new line there.
      const line: LedgerLine = { lineKey: 'lineItem/0', kind: 'charge', amount: parseMoney('18.00', 'USD'), serviceDate: '2026-01-10', payer: 'patient', serviceCode: null, description: null };
      const target = { accountId: b.accountId, guarantorId, patientId };
      const result = await withTransaction(db(), (tx) =>
        ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: 'moved', versionId: '2', lastUpdated: null }, target, [line]),
      );
      assert.deepEqual([result.outcome, result.posted, result.reversed], ['posted', 1, 1]);
      const entriesOnB = await ledger.entries(b.balanceId);
      assert.deepEqual(entriesOnB.filter((e) => e.source.sourceId === 'moved').map((e) => [e.amount.amount, e.reversesEntryId]), [[1500, null], [-1500, onB], [1800, null]]);
      assert.equal((await ledger.getBalance(b.balanceId))?.patientAmount.amount, 2000 + 1800, "the split source's 2000 and the moved source's new line");
    });
  });
}
