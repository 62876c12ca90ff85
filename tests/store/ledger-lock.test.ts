import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import type { LedgerLine, SourceVersion } from '../../src/domain/ledger.ts';
import { parseMoney } from '../../src/domain/money.ts';
import { withTransaction, type Queryable } from '../../src/store/database.ts';
import { LedgerBatch } from '../../src/store/ledger-batch.ts';
import { LedgerParties, type PartiesInput } from '../../src/store/ledger-parties.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { waitUntilBlockedBy } from '../support/lock-waits.ts';

/**
 * How ingest's upserts insert or lock (`ledger-lock.ts`): a row that exists is locked without a new version of it,
 * and what a batch reads of it is what the transaction it waited for committed.
 */
const testCipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });

describeOnEachDatabase('ledger insert-or-lock', (db, engine) => {
  const clock = new ManualClock(new Date('2026-03-01T15:00:00Z'));
  const serverOnly = { skip: engine === 'pglite' ? 'the embedded database runs one transaction at a time' : undefined };
  let practiceId = '';

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'lock-test', name: 'Lock Test', timeZone: 'America/Chicago' })).id;
  });

  const input = (patient: string, account = `acct-${patient}`, guarantor?: string): PartiesInput => ({
    patient: { identifier: { system: 'urn:mrn', value: patient }, contact: {} },
    guarantor: guarantor ? { identifier: { system: 'urn:guarantor', value: guarantor }, contact: {} } : null,
    account: { identifier: { system: 'urn:acct', value: account }, name: null },
  });
  const resolve = (tx: Queryable, inputs: PartiesInput[]) => new LedgerParties(tx, testCipher, clock).resolveParties(practiceId, inputs);
  const line = (lineKey: string, amount: string): LedgerLine => ({
    lineKey, kind: 'charge', amount: parseMoney(amount, 'USD'), serviceDate: '2026-02-01', payer: 'patient', serviceCode: null, description: null,
  });
  const version = (sourceId: string, versionId: string): SourceVersion => ({ connector: 'ehr', resourceType: 'Invoice', sourceId, versionId, lastUpdated: null });
  const versionOf = async (table: string, id: string) => (await db().pool.query<{ xmin: string }>(`SELECT xmin::text AS xmin FROM ${table} WHERE id = $1`, [id])).rows[0]!.xmin;

  it('resolves existing patients, guarantors, accounts and balances to the same rows, writing no new version of them', async () => {
    const [first] = await withTransaction(db(), (tx) => resolve(tx, [input('P1', 'A1', 'G1')]));
    const target = { accountId: first!.accountId!, guarantorId: first!.guarantorId!, patientId: first!.selfPatientId };
    const [posted] = await withTransaction(db(), (tx) => new LedgerBatch(tx, clock).postSources(practiceId, [{ version: version('inv-1', '1'), target, lines: [line('a', '10.00')] }]));
    const balanceId = posted!.balanceIds[0]!;
    const rows = { patients: first!.patientId!, guarantors: first!.guarantorId!, ledger_accounts: first!.accountId!, balances: balanceId };
    const before = Object.fromEntries(await Promise.all(Object.entries(rows).map(async ([table, id]) => [table, await versionOf(table, id)])));
    const [again] = await withTransaction(db(), async (tx) => {
      const parties = await resolve(tx, [input('P1', 'A1', 'G1')]);
      // inv-2 posts to the same balance, which is recomputed: only balances gets a new version.
      await new LedgerBatch(tx, clock).postSources(practiceId, [{ version: version('inv-2', '1'), target, lines: [line('a', '5.00')] }]);
      return parties;
    });
    assert.deepEqual(again, first);
    for (const table of ['patients', 'guarantors', 'ledger_accounts'] as const) assert.equal(await versionOf(table, rows[table]), before[table], `${table}: no new version`);
    const { rows: counts } = await db().pool.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM patients WHERE practice_id = $1)::int + (SELECT count(*) FROM ledger_accounts WHERE practice_id = $1)::int AS n`,
      [practiceId],
    );
    assert.equal(counts[0]!.n, 2);
  });

  it('holds the lock of each existing row it resolved until its transaction ends', serverOnly, async () => {
    const [parties] = await withTransaction(db(), (tx) => resolve(tx, [input('P2')]));
    const target = { accountId: parties!.accountId!, guarantorId: parties!.guarantorId!, patientId: parties!.selfPatientId };
    const posting = { version: version('inv-2a', '1'), target, lines: [line('a', '1.00')] };
    await withTransaction(db(), (tx) => new LedgerBatch(tx, clock).postSources(practiceId, [posting]));
    const client = await db().pool.connect();
    try {
      await client.query('BEGIN');
      await resolve(client, [input('P2')]);
      assert.equal((await new LedgerBatch(client, clock).postSources(practiceId, [posting]))[0]!.outcome, 'duplicate');
      const locked = (sql: string, ...values: unknown[]) => assert.rejects(db().pool.query(`${sql} FOR NO KEY UPDATE NOWAIT`, values), (e: { code?: string }) => e.code === '55P03', sql);
      for (const [table, id] of [['patients', parties!.patientId], ['guarantors', parties!.guarantorId], ['ledger_accounts', parties!.accountId]] as const) {
        await locked(`SELECT 1 FROM ${table} WHERE id = $1`, id);
      }
      await locked('SELECT 1 FROM ledger_sources WHERE practice_id = $1 AND source_id = $2', practiceId, 'inv-2a');
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  });

  it('waits for a concurrent writer of the same account and source, then reads what it committed', serverOnly, async () => {
    const [seed] = await withTransaction(db(), (tx) => resolve(tx, [input('P3', 'A3')]));
    const target = { accountId: seed!.accountId!, guarantorId: seed!.guarantorId!, patientId: seed!.selfPatientId };
    await withTransaction(db(), (tx) => new LedgerBatch(tx, clock).postSources(practiceId, [{ version: version('inv-3', '1'), target, lines: [line('a', '10.00')] }]));
    const other = await db().pool.connect();
    try {
      // Another transaction names a guarantor on account A3 and posts version 3 of inv-3, and has not committed.
      await other.query('BEGIN');
      const [named] = await resolve(other, [input('P3', 'A3', 'G3')]);
      await new LedgerBatch(other, clock).postSources(practiceId, [{ version: version('inv-3', '3'), target, lines: [line('a', '12.00')] }]);
      const batch = withTransaction(db(), async (tx) => {
        // A3 again with no guarantor (its guarantor is the account's), a new patient, and inv-3 version 2.
        const parties = await resolve(tx, [input('P3', 'A3'), input('P4')]);
        const results = await new LedgerBatch(tx, clock).postSources(practiceId, [{ version: version('inv-3', '2'), target, lines: [line('a', '11.00')] }]);
        return { parties, results };
      });
      await waitUntilBlockedBy(db().pool, other);
      await other.query('COMMIT');
      const { parties, results } = await batch;
      assert.equal(parties[0]!.guarantorId, named!.guarantorId, 'the account as the other transaction committed it, not as this statement first saw it');
      assert.equal(parties[1]!.patientId !== null, true);
      assert.equal(results[0]!.outcome, 'stale', 'the source is at version 3 (committed), not 1 (when this statement began)');
      const { rows } = await db().pool.query<{ n: number }>('SELECT count(*)::int AS n FROM ledger_entries WHERE source_id = $1', ['inv-3']);
      assert.equal(rows[0]!.n, 3, 'version 1, its reversal, version 3');
    } finally {
      other.release();
    }
  });

  it('waits for a concurrent insert of the same new rows, then uses the rows it committed', serverOnly, async () => {
    const other = await db().pool.connect();
    try {
      await other.query('BEGIN');
      const [theirs] = await resolve(other, [input('P5', 'A5')]);
      const target = { accountId: theirs!.accountId!, guarantorId: theirs!.guarantorId!, patientId: theirs!.selfPatientId };
      const [first] = await new LedgerBatch(other, clock).postSources(practiceId, [{ version: version('inv-5', '1'), target, lines: [line('a', '10.00')] }]);
      const batch = withTransaction(db(), async (tx) => {
        const parties = await resolve(tx, [input('P6'), input('P5', 'A5')]);
        const results = await new LedgerBatch(tx, clock).postSources(practiceId, [{ version: version('inv-6', '1'), target, lines: [line('b', '3.00')] }]);
        return { parties, results };
      });
      await waitUntilBlockedBy(db().pool, other);
      await other.query('COMMIT');
      const { parties, results } = await batch;
      assert.deepEqual(parties[1], theirs);
      assert.deepEqual(results[0]!.balanceIds, first!.balanceIds, 'the balance the other transaction created');
      const { rows } = await db().pool.query<{ patient_amount_minor: string }>('SELECT patient_amount_minor::text FROM balances WHERE id = $1', [first!.balanceIds[0]]);
      assert.equal(rows[0]!.patient_amount_minor, '1300');
    } finally {
      other.release();
    }
  });
});
