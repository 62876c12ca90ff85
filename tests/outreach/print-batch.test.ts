/**
 * Letters: the letter channel queues them, the daily print batch renders a practice's day of letters into one
 * PDF (a page per letter) under SETTLE_DATA_DIR/print/, the API lists and serves the batches, and
 * `settle letters batch` runs it from the command line.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApi } from '../../src/api/app.ts';
import { EngineMetrics } from '../../src/api/metrics.ts';
import { prepareDatabase } from '../../src/cli/engine.ts';
import { silentLogger } from '../../src/config/logger.ts';
import { ManualClock, systemClock, type Clock } from '../../src/domain/clock.ts';
import type { PersonContact } from '../../src/domain/contact.ts';
import { loadMappings } from '../../src/mapping/load.ts';
import { LetterChannel, payUrlOfLetter } from '../../src/outreach/letter-channel.ts';
import { printBatchJob, runPrintBatch } from '../../src/outreach/print-batch.ts';
import { defaultTemplates, renderMessage, selectTemplate } from '../../src/outreach/templates.ts';
import { ApiKeyRepository } from '../../src/store/api-keys.ts';
import { openDatabase, withTransaction, type Database } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { loadKeyring, PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { ROOT, runCli } from '../support/cli.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { line, pdfPages, pdfText, popplerMissing, seedBalance } from './letter-fixtures.ts';

const logger = silentLogger();
// Monday 2026-06-15 10:00 in Chicago.
const DAY1 = new Date('2026-06-15T15:00:00Z');

/** Puts a rendered statement letter for a balance in the outbox and hands it to the letter channel, as delivery does. */
async function queueLetter(db: Database, cipher: PhiCipher, clock: Clock, practiceId: string, balanceId: string, firstName: string, address: string, language: 'en' | 'es' = 'en') {
  const payLink = `https://pay.riverside.example/p/${firstName}Token0123456789abcdefghij`.slice(0, 62);
  const rendered = renderMessage(selectTemplate(defaultTemplates, 'statement-letter', 'letter', language)!, {
    practiceName: 'Riverside Family Medicine', practicePhone: '(555) 010-0199', firstName, amountDueCents: 1, statementDate: '2026-06-15', dueDate: '2026-07-15', payLink,
  });
  const outboxId = await new OutreachRepository(db.pool, cipher, clock).addToOutbox({
    practiceId, balanceId, channel: 'letter', recipient: address, subject: rendered.subject ?? null, body: rendered.text, language, template: rendered.template,
  });
  const result = await new LetterChannel({ db, cipher, clock }).send({
    outboxId, practiceId, balanceId, channel: 'letter', to: address, subject: rendered.subject ?? null, body: rendered.text, html: null, language,
  });
  assert.deepEqual(result, { status: 'sent', providerMessageId: `print:${outboxId}` });
  return { outboxId, payLink };
}

const contact = (given: string, family: string, street: string, language = 'en'): PersonContact => ({
  name: { given: [given], family }, language, address: { lines: [street], city: 'Springfield', state: 'IL', postalCode: '62704' },
});

describeOnEachDatabase('the daily print batch', (db) => {
  const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
  const clock = new ManualClock(DAY1);
  const dataDir = mkdtempSync(join(tmpdir(), 'settle-print-'));
  let practiceId = '';
  const letters: { outboxId: string; payLink: string; balanceId: string }[] = [];
  let paidOutboxId = '';
  let http: Server;
  let apiUrl = '';
  let staffKey = '';

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'print-test', name: 'Riverside Family Medicine', timeZone: 'America/Chicago', phone: '(555) 010-0199' })).id;
    const people: [string, string, string, string, string][] = [
      ['P1', 'Maria', 'Gonzalez', '1 Elm St', '120.00'], ['P2', 'Jose', 'Perez', '2 Oak Ave', '80.00'], ['P3', 'Ana', 'Lee', '3 Pine Rd', '45.50'],
    ];
    for (const [mrn, given, family, street, amount] of people) {
      const balanceId = await seedBalance(db(), cipher, clock, practiceId, mrn, contact(given, family, street, mrn === 'P2' ? 'es' : 'en'), [
        line('c1', 'charge', amount, '2026-05-01', { serviceCode: '99214', description: 'Hypertension follow-up' }),
      ]);
      letters.push({ ...(await queueLetter(db(), cipher, clock, practiceId, balanceId, given, `${street}\nSpringfield, IL 62704`, mrn === 'P2' ? 'es' : 'en')), balanceId });
    }
    // A fourth letter whose balance is paid before the batch runs.
    const paid = await seedBalance(db(), cipher, clock, practiceId, 'P4', contact('Omar', 'Haddad', '4 Birch Ln'), [line('c1', 'charge', '30.00', '2026-05-01')]);
    paidOutboxId = (await queueLetter(db(), cipher, clock, practiceId, paid, 'Omar', '4 Birch Ln\nSpringfield, IL 62704')).outboxId;
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    const balance = (await ledger.getBalance(paid))!;
    await withTransaction(db(), (tx) => ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Payment', sourceId: 'pay-P4', versionId: '1', lastUpdated: null },
      { accountId: balance.accountId, guarantorId: balance.guarantorId, patientId: balance.patientId }, [line('p1', 'payment', '30.00', '2026-06-14')]));

    const { app } = createApi({
      configDir: ROOT, cipher, mappings: loadMappings(ROOT), db: db(), clock, logger, metrics: new EngineMetrics(), version: 'test',
      readiness: { database: async () => ({ ok: true, detail: '' }), migrations: async () => ({ ok: true, detail: '' }), scheduler: () => ({ ok: true, detail: '' }) },
    });
    http = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => http.once('listening', resolve));
    apiUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    staffKey = (await new ApiKeyRepository(db().pool, clock).create(practiceId, 'front desk', 'staff')).secret;
  });

  after(async () => {
    http?.closeAllConnections();
    await new Promise((resolve) => http?.close(resolve));
  });

  it('the letter channel queues a letter once, and refuses one without an address', async () => {
    const { rows } = await db().pool.query('SELECT outbox_id, pay_url FROM print_queue WHERE practice_id = $1 ORDER BY queued_at', [practiceId]);
    assert.equal(rows.length, 4);
    assert.equal(rows[0].pay_url, letters[0]!.payLink, 'the pay link of the letter text');
    const again = await new LetterChannel({ db: db(), cipher, clock }).send({
      outboxId: letters[0]!.outboxId, practiceId, balanceId: letters[0]!.balanceId, channel: 'letter', to: '1 Elm St', subject: null, body: `Pay at ${letters[0]!.payLink}`, html: null, language: 'en',
    });
    assert.equal(again.status, 'sent');
    assert.equal((await db().pool.query('SELECT count(*)::int AS n FROM print_queue WHERE practice_id = $1', [practiceId])).rows[0].n, 4, 'still four');
    const noAddress = await new LetterChannel({ db: db(), cipher, clock }).send({
      outboxId: letters[0]!.outboxId, practiceId, balanceId: letters[0]!.balanceId, channel: 'letter', to: ' \n ', subject: null, body: 'x', html: null, language: 'en',
    });
    assert.ok(noAddress.status === 'failed' && noAddress.undeliverable && noAddress.code === 'no-address');
    assert.equal(payUrlOfLetter('Pay online at https://x.example/p/abc, or call.'), 'https://x.example/p/abc');
    assert.equal(payUrlOfLetter('No link here.'), undefined);
    const noLink = await new LetterChannel({ db: db(), cipher, clock }).send({
      outboxId: letters[1]!.outboxId, practiceId, balanceId: letters[1]!.balanceId, channel: 'letter', to: '1 Elm St', subject: null, body: 'Please call us.', html: null, language: 'en',
    });
    assert.ok(noLink.status === 'failed' && !noLink.transient && noLink.code === 'no-pay-link', 'a letter without a pay link is refused, not printed with a dead link');
  });

  it('the scheduled job waits for the end of the practice day', async () => {
    await printBatchJob({ db: db(), cipher, clock, logger, dataDir }).run({}, { jobId: 'j1', failures: 0 });
    assert.equal((await db().pool.query('SELECT count(*)::int AS n FROM print_batches WHERE practice_id = $1', [practiceId])).rows[0].n, 0, '10:00 local: no batch yet');
  });

  it("renders the day's letters into ONE PDF, a statement per page, and skips the letter of a paid balance", { skip: popplerMissing }, async () => {
    clock.set(new Date('2026-06-15T22:30:00Z')); // 17:30 in Chicago
    await printBatchJob({ db: db(), cipher, clock, logger, dataDir }).run({ practiceId }, { jobId: 'j2', failures: 0 });
    const file = join(dataDir, 'print', '2026-06-15-print-test.pdf');
    assert.ok(existsSync(file), 'written under SETTLE_DATA_DIR/print/');
    assert.equal(statSync(file).mode & 0o777, 0o600, 'readable by the engine only: it holds names and addresses');
    const pdf = readFileSync(file);
    assert.equal(pdfPages(pdf), 3, 'three statements, one page each');
    const text = pdfText(pdf);
    for (const { payLink } of letters) assert.ok(text.includes(payLink), `each letter has its own pay link (${payLink})`);
    for (const name of ['Maria', 'Jose', 'Ana']) assert.match(text, new RegExp(`${name}\\s*\\n\\s*\\d+ \\w+ \\w+\\s*\\n\\s*Springfield, IL 62704`));
    assert.ok(text.includes('$120.00') && text.includes('$80.00') && text.includes('$45.50'));
    assert.equal(text.match(/Medical services/g)?.length, 2, 'two English statements');
    assert.equal(text.match(/Servicios médicos/g)?.length, 1, 'one Spanish statement');
    assert.doesNotMatch(text, /Omar|99214|Hypertension|Gonzalez|Perez/, 'not the paid letter, no codes, no last names');
    const skipped = (await db().pool.query('SELECT outcome, reason FROM print_queue WHERE outbox_id = $1', [paidOutboxId])).rows[0];
    assert.deepEqual(skipped, { outcome: 'skipped', reason: 'the balance is paid' });
    const state = (await db().pool.query('SELECT state, last_error FROM outbox WHERE id = $1', [paidOutboxId])).rows[0];
    assert.equal(state.state, 'failed');
    assert.match(state.last_error, /not printed: the balance is paid/);
  });

  it('a second run the same day returns the same batch; later letters wait for the next day', { skip: popplerMissing }, async () => {
    const maria = letters[0]!;
    const late = await queueLetter(db(), cipher, clock, practiceId, maria.balanceId, 'Maria', '1 Elm St\nSpringfield, IL 62704');
    const again = await runPrintBatch({ db: db(), cipher, clock, logger, practiceId, dataDir });
    assert.equal(again.alreadyMade, true);
    assert.equal(again.batch?.letters, 3);
    clock.set(new Date('2026-06-16T22:30:00Z'));
    const next = await runPrintBatch({ db: db(), cipher, clock, logger, practiceId, dataDir });
    assert.equal(next.date, '2026-06-16');
    assert.equal(next.batch?.letters, 1);
    assert.ok(pdfText(readFileSync(next.file!)).includes(late.payLink));
    const nothing = await runPrintBatch({ db: db(), cipher, clock, logger, practiceId, dataDir, date: '2026-06-17' });
    assert.equal(nothing.batch, undefined, 'no letters: no batch, no file');
    await assert.rejects(runPrintBatch({ db: db(), cipher, clock, logger, practiceId, date: '2026-02-30' }), /"2026-02-30" is not a YYYY-MM-DD date/);
  });

  it('GET /print-batches lists the batches and GET /print-batches/{date} downloads the PDF (staff key required)', { skip: popplerMissing }, async () => {
    const auth = { authorization: `Bearer ${staffKey}` };
    const listed = (await (await fetch(`${apiUrl}/print-batches`, { headers: auth })).json()) as { batches: { date: string; letters: number; skipped: number; download: string | null }[] };
    assert.deepEqual(listed.batches.map((b) => [b.date, b.letters, b.skipped, b.download]), [
      ['2026-06-16', 1, 0, '/print-batches/2026-06-16'], ['2026-06-15', 3, 1, '/print-batches/2026-06-15'],
    ]);
    const download = await fetch(`${apiUrl}/print-batches/2026-06-15`, { headers: auth });
    assert.equal(download.status, 200);
    assert.equal(download.headers.get('content-type'), 'application/pdf');
    assert.match(download.headers.get('content-disposition')!, /attachment; filename="2026-06-15-print-test\.pdf"/);
    assert.equal(pdfPages(Buffer.from(await download.arrayBuffer())), 3);
    assert.equal((await fetch(`${apiUrl}/print-batches/2026-06-01`, { headers: auth })).status, 404);
    const bad = await fetch(`${apiUrl}/print-batches/yesterday`, { headers: auth });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { detail: string }).detail, /YYYY-MM-DD/);
    assert.equal((await fetch(`${apiUrl}/print-batches`)).status, 401);
  });
});

describe('settle letters batch', { skip: popplerMissing }, () => {
  it('makes the batch now on the embedded database and says where the PDF is', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'settle-letters-cli-'));
    const db = await openDatabase({ databaseUrl: undefined, dataDir, poolSize: 3 });
    try {
      await prepareDatabase(db);
      const cipher = new PhiCipher(await loadKeyring({ encryptionKeys: undefined, blindIndexKey: undefined, dataDir, embedded: true, logger }));
      const practice = (await new PracticeRepository(db.pool).findBySlug('default'))!;
      const balanceId = await seedBalance(db, cipher, systemClock, practice.id, 'C1', contact('Maria', 'Gonzalez', '1 Elm St'), [line('c1', 'charge', '99.00', '2026-01-05')]);
      await queueLetter(db, cipher, systemClock, practice.id, balanceId, 'Maria', '1 Elm St\nSpringfield, IL 62704');
    } finally {
      await db.close();
    }
    const env = { DATABASE_URL: undefined, SETTLE_ENCRYPTION_KEYS: undefined, SETTLE_BLIND_INDEX_KEY: undefined, SETTLE_CONFIG_DIR: ROOT, SETTLE_DATA_DIR: dataDir };
    const made = await runCli(['letters', 'batch'], env);
    assert.equal(made.code, 0, made.stderr);
    const file = /, (\/\S+\.pdf)$/m.exec(made.stdout)?.[1];
    assert.match(made.stdout, /^Made: print batch \d{4}-\d{2}-\d{2} for default: 1 letter\(s\), 0 skipped, /m);
    assert.ok(file && existsSync(file), made.stdout);
    assert.equal(pdfPages(readFileSync(file)), 1);
    const again = await runCli(['letters', 'batch', '--json'], env);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual({ ...JSON.parse(again.stdout), date: undefined, file: undefined }, { date: undefined, alreadyMade: true, letters: 1, skipped: 0, file: undefined });
    const usage = await runCli(['letters', 'batch', '--date', '15/06/2026'], env);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--date must be YYYY-MM-DD/);
  });
});
