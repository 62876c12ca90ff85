import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { importCsv, type CsvImportOptions } from '../../src/ingest/csv-import.ts';
import { compileMapping } from '../../src/mapping/compile.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const file = 'mappings/csv-statement.json';
const text = readFileSync(`${repoRoot}${file}`, 'utf8');
const usd = compileMapping({ name: 'csv-statement', file, data: JSON.parse(text) });
/** The same statement with amounts in euros: its rows cannot post to balances already kept in dollars. */
const eur = compileMapping({ name: 'csv-statement-eur', file, data: JSON.parse(text.replaceAll('"USD"', '"EUR"')) });
const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
const dir = mkdtempSync(join(tmpdir(), 'settle-csv-batch-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const HEADER = 'Account,Guarantor ID,Guarantor First,Guarantor Last,Patient ID,Patient First,Patient Last,Patient DOB,Phone,Email,Address,City,State,ZIP,Service Date,Item ID,Description,Charges,Payments,Adjustments,Balance';
const ROWS = 2000;
/** Row n (1-based, on file line n + 1): account A-(n mod 300), item I-n, 100.00 + n cents charged, 10.00 paid. */
function row(n: number, item = `I-${n}`): string {
  const charge = 10000 + n;
  const cents = (minor: number) => `${Math.floor(minor / 100)}.${String(minor % 100).padStart(2, '0')}`;
  const date = n % 97 === 0 ? '13/1/2026' : `1/${1 + (n % 28)}/2026`; // every 97th row: no such month
  const cells = [`A-${n % 300}`, '', '', '', `P-${n % 300}`, 'Pat', `Doe${n % 300}`, '3/4/1990', '', '', '', '', '', '', date, item, 'Visit', cents(charge), '10.00', '0.00', cents(charge - 1000)];
  return (n % 250 === 0 ? [...cells, 'extra'] : cells).join(','); // every 250th row: one column too many
}
const badDate = (n: number) => n % 97 === 0 && n % 250 !== 0;
const badColumns = (n: number) => n % 250 === 0;

describeOnEachDatabase('CSV import in batches', (db) => {
  const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
  let practiceId = '';
  const statement = join(dir, `statement-${randomBytes(4).toString('hex')}.csv`);
  writeFileSync(statement, `${HEADER}\n${Array.from({ length: ROWS }, (_, i) => row(i + 1)).join('\n')}\n`);
  const options = (over: Partial<CsvImportOptions> = {}): CsvImportOptions => ({ db: db(), practiceId, connector: 'pm-csv', mapping: usd, file: statement, cipher, clock, ...over });
  const ledgerState = async () =>
    (await db().pool.query<{ entries: string; total: string; balances: string }>(
      `SELECT (SELECT count(*) FROM ledger_entries WHERE practice_id = $1)::text AS entries,
              (SELECT coalesce(sum(effect_minor), 0) FROM ledger_entries WHERE practice_id = $1)::text AS total,
              (SELECT count(*) FROM balances WHERE practice_id = $1)::text AS balances`,
      [practiceId],
    )).rows[0]!;

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'csv-batch', name: 'CSV Batch', timeZone: 'America/Chicago' })).id;
  });

  it(`imports ${ROWS} rows in batches, reporting each bad row by line and column in line order`, async () => {
    const summary = await importCsv(options());
    const lines = Array.from({ length: ROWS }, (_, i) => i + 1);
    const good = lines.filter((n) => !badDate(n) && !badColumns(n));
    assert.deepEqual(
      summary.problems,
      lines.flatMap((n) =>
        badColumns(n) ? [`line ${n + 1}: has 22 columns, the header has 21`]
        : badDate(n) ? [`line ${n + 1}, column 15 (Service Date): "13/1/2026" is not a valid date: you specified 13 (of type number) as a month, which is invalid`]
        : [],
      ),
    );
    assert.deepEqual({ ...summary, problems: undefined }, { rows: ROWS, posted: good.length, unchanged: 0, duplicate: 0, stale: 0, bad: ROWS - good.length, problems: undefined });
    const state = await ledgerState();
    assert.equal(Number(state.balances), 300);
    assert.equal(Number(state.total), good.reduce((sum, n) => sum + (10000 + n) - 1000, 0), 'each good row posted its charge less its payment, once');
  });

  it('changes nothing when the same file is imported again', async () => {
    const before = await ledgerState();
    const summary = await importCsv(options({ batchSize: 7 }));
    assert.equal(summary.posted, 0);
    assert.equal(summary.duplicate, summary.rows - summary.bad);
    assert.deepEqual(await ledgerState(), before);
  });

  it('posts the good rows of a batch the ledger refuses, row by row, and reports the refused ones', async () => {
    // Accounts A-0…A-299 keep dollars; A-1000 and up are new. Euro rows for the former are refused by the ledger.
    const euros = join(dir, `euros-${randomBytes(4).toString('hex')}.csv`);
    const rows = Array.from({ length: 60 }, (_, i) => {
      const n = i % 3 === 0 ? i + 1 : 1000 + i; // every third row: an existing dollar account
      return { line: i + 2, refused: i % 3 === 0, text: row(n, `E-${i}`).replace(/^A-\d+/, `A-${n < 1000 ? n % 300 : n}`) };
    });
    writeFileSync(euros, `${HEADER}\n${rows.map((r) => r.text).join('\n')}\n`);
    const before = await ledgerState();
    const summary = await importCsv(options({ file: euros, mapping: eur, batchSize: 25 }));
    assert.equal(summary.posted, 40);
    assert.equal(summary.bad, 20);
    assert.deepEqual(summary.problems.map((p) => Number(/^line (\d+),/.exec(p)?.[1])), rows.filter((r) => r.refused).map((r) => r.line));
    for (const problem of summary.problems) assert.match(problem, /the balance is in USD; a EUR amount cannot be added/);
    const after = await ledgerState();
    assert.equal(Number(after.balances) - Number(before.balances), 40, 'each new account got its euro balance');
    assert.equal(Number(after.entries) - Number(before.entries), 80, 'a charge and a payment per good row; nothing of the refused ones');
  });
});
