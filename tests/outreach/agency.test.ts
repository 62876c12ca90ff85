/**
 * Agency hand-off: a balance whose cadence reaches its agency step is agency-ready; the export writes only what
 * an agency needs, marks the balances sent_to_agency (which stops all outreach) and is audited as a PHI export;
 * a recall returns them. Through the real HTTP API and, on a PostgreSQL server, the real `settle agency` command.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import express from 'express';
import { DateTime } from 'luxon';
import { problemHandler } from '../../src/api/problem.ts';
import { mountRoutes } from '../../src/api/routes.ts';
import { silentLogger } from '../../src/config/logger.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import type { LedgerLine } from '../../src/domain/ledger.ts';
import { parseMoney } from '../../src/domain/money.ts';
import { parsePolicy } from '../../src/domain/policy.ts';
import { payLinkKeyRing } from '../../src/domain/pay-link.ts';
import { AGENCY_CSV_COLUMNS } from '../../src/outreach/agency.ts';
import { outreachRoutes } from '../../src/outreach/routes.ts';
import { planPractice } from '../../src/outreach/run.ts';
import { ApiKeyRepository } from '../../src/store/api-keys.ts';
import { AuditLog } from '../../src/store/audit.ts';
import { withTransaction } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { runCli } from '../support/cli.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { withoutIds } from '../support/phi.ts';

const phiKey = randomBytes(32);
const blindKey = randomBytes(32);
const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: phiKey }], blindIndexKey: blindKey });
const policy = parsePolicy(JSON.parse(readFileSync(new URL('../../policies/default.json', import.meta.url), 'utf8')) as Record<string, unknown>);
const payLinkKeys = payLinkKeyRing(1, [[1, randomBytes(32)]]);
const ZONE = 'America/Chicago';
const DAY0 = '2026-03-02';
const onDay = (day: number) => DateTime.fromISO(DAY0, { zone: ZONE }).plus({ days: day }).set({ hour: 11 }).toJSDate();
const line = (lineKey: string, kind: LedgerLine['kind'], amount: string, serviceDate: string, extra: Partial<LedgerLine> = {}): LedgerLine => ({
  lineKey, kind, amount: parseMoney(amount, 'USD'), serviceDate, payer: 'patient', serviceCode: null, description: null, ...extra,
});

describeOnEachDatabase('agency hand-off', (db, engine) => {
  const clock = new ManualClock(onDay(0));
  let practiceId = '';
  const ids = { maria: '', small: '', later: '' };
  let base = '';
  let server: ReturnType<ReturnType<typeof express>['listen']> | undefined;
  let staff = '';
  let admin = '';
  const plan = (day: number) => {
    clock.set(onDay(day));
    return planPractice({ db: db(), cipher, clock, logger: silentLogger(), practiceId, policy, payLinkKeys });
  };
  const call = async (path: string, key: string, init: RequestInit = {}) => {
    const response = await fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });
    return { status: response.status, headers: response.headers, text: await response.text() };
  };
  const status = async (balanceId: string) => (await new LedgerRepository(db().pool, cipher, clock).getBalance(balanceId))!.status;

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'agency-test', name: 'Riverside Family Medicine', timeZone: ZONE, phone: '(555) 010-0199' })).id;
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    const person = async (mrn: string, contact: Parameters<LedgerRepository['upsertPatient']>[2], lines: LedgerLine[]) => {
      const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: mrn }, contact);
      const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
      const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: `ACCT-${mrn}` }, patientId });
      const posted = await withTransaction(db(), (tx) =>
        ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: `inv-${mrn}`, versionId: '1', lastUpdated: null }, { accountId, guarantorId, patientId }, lines));
      return posted.balanceIds[0]!;
    };
    const address = { lines: ['1 Main St', 'Apt 2'], city: 'Chicago', state: 'IL', postalCode: '60601' };
    ids.maria = await person('P1', { name: { given: ['Maria'], family: 'Gonzalez' }, phones: ['(617) 555-0134'], email: 'maria@example.com', address, birthDate: '1984-03-07' }, [
      line('c1', 'charge', '150.00', '2026-02-20', { serviceCode: '99213', description: 'Office visit: diabetes follow-up' }),
      line('p1', 'payment', '20.00', '2026-04-15'),
    ]);
    ids.small = await person('P2', { name: { given: ['Ana'], family: 'Ortiz' }, address }, [line('c1', 'charge', '15.00', '2026-02-20')]);
    ids.later = await person('P3', { name: { given: ['=HYPERLINK("x")'], family: 'Smith, Jr.' }, phones: ['+1 312 555 0188'], address }, [line('c1', 'charge', '80.00', '2026-02-20')]);
    // The third balance reached outreach ten days later.
    await new OutreachRepository(db().pool, cipher, clock).cadenceStart(practiceId, ids.later, DateTime.fromISO(DAY0).plus({ days: 10 }).toISODate()!);

    const keys = new ApiKeyRepository(db().pool, clock);
    staff = (await keys.create(practiceId, 'staff key', 'staff')).secret;
    admin = (await keys.create(practiceId, 'admin key', 'admin')).secret;
    const app = express();
    app.use(express.json());
    const router = express.Router();
    mountRoutes(router, outreachRoutes({ db: db(), cipher, clock }), (presented) => keys.authenticate(presented));
    app.use(router);
    app.use(problemHandler(silentLogger()));
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server!.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => {
    if (!server) return resolve();
    server.closeAllConnections();
    server.close(() => resolve());
  }));

  it('at the last step a balance becomes agency-ready; a balance under the step minimum does not', async () => {
    for (const day of [0, 30, 45, 60]) await plan(day);
    assert.deepEqual(JSON.parse((await call('/agency/ready', staff)).text).balances, []);
    const day90 = await plan(90);
    assert.deepEqual(day90.agencyReady.map((r) => r.balanceId), [ids.maria]);
    const ready = JSON.parse((await call('/agency/ready', staff)).text) as { balances: { balanceId: string; accountRef: string; amountMinor: number; firstStatementDate: string }[] };
    assert.deepEqual(ready.balances.map((b) => [b.balanceId, b.accountRef, b.amountMinor, b.firstStatementDate]), [[ids.maria, 'ACCT-P1', 13000, DAY0]]);
    assert.doesNotMatch(withoutIds(JSON.stringify(ready)), /Maria|Gonzalez|Main St|617/);
    assert.equal((await plan(91)).agencyReady.length, 0, 'recorded once');
  });

  it('the export answers only what an agency needs, marks the balance sent_to_agency and is audited; outreach stops', async () => {
    assert.equal((await call('/agency/exports', staff, { method: 'POST' })).status, 403, 'a PHI export needs an admin key');
    const exported = await call('/agency/exports', admin, { method: 'POST' });
    assert.equal(exported.status, 200);
    assert.match(exported.headers.get('content-type')!, /^text\/csv/);
    assert.equal(exported.headers.get('x-settle-balance-count'), '1');
    const exportId = exported.headers.get('x-settle-export-id')!;
    const lines = exported.text.split('\r\n');
    assert.equal(lines[0], AGENCY_CSV_COLUMNS.join(','));
    assert.equal(lines[1], `ACCT-P1,Maria Gonzalez,1 Main St,Apt 2,Chicago,IL,60601,(617) 555-0134,130.00,USD,${DAY0},2026-04-15`);
    assert.equal(lines.length, 3, 'one balance and the final line break');
    assert.doesNotMatch(withoutIds(exported.text), /99213|diabetes|Office visit|maria@|1984|2026-02-20/, 'no code, description, service date, email or birth date');

    assert.equal(await status(ids.maria), 'sent_to_agency');
    const history = await new LedgerRepository(db().pool, cipher, clock).statusHistory(ids.maria);
    assert.match(history.at(-1)!.actor, /^apikey:/);
    assert.equal(history.at(-1)!.note, `agency export ${exportId}`);
    const audited = (await new AuditLog(db(), clock).list(practiceId)).find((e) => e.action === 'agency.export');
    assert.equal(audited?.entityId, exportId);
    assert.equal((audited?.detail as { balanceCount: number }).balanceCount, 1);
    assert.doesNotMatch(withoutIds(JSON.stringify(audited)), /Maria|Gonzalez|Main St|617/);

    const eligibleBefore = (await plan(92)).balances;
    const attemptsBefore = (await new OutreachRepository(db().pool, cipher, clock).attempts(ids.maria)).length;
    const later = await plan(100);
    assert.equal(later.balances, eligibleBefore, 'the exported balance is no longer eligible for outreach');
    assert.ok(![...later.sent, ...later.suppressed, ...later.deferred].some((s) => s.balanceId === ids.maria));
    assert.equal((await new OutreachRepository(db().pool, cipher, clock).attempts(ids.maria)).length, attemptsBefore);
    assert.deepEqual(later.agencyReady.map((r) => r.balanceId), [ids.later], 'the later balance reaches its day 90');
  });

  it('the agency file is CSV a spreadsheet cannot run: quoted commas, formulas defused', { skip: engine === 'postgres' ? 'on the server, the command-line test below exports this balance' : false }, async () => {
    const exported = await call('/agency/exports', admin, { method: 'POST' });
    const row = exported.text.split('\r\n')[1]!;
    assert.match(row, /^ACCT-P3,"'=HYPERLINK\(""x""\) Smith, Jr\.",1 Main St,Apt 2,Chicago,IL,60601,\+1 312 555 0188,80\.00,USD,2026-03-12,$/);
    assert.equal(await status(ids.later), 'sent_to_agency');
  });

  it('settle agency export --out writes the file and marks the balances; settle agency recall returns one', { skip: engine === 'pglite' ? 'the command line reaches only a PostgreSQL server database here' : false }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'settle-agency-'));
    try {
      await commandLine(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  async function commandLine(dir: string): Promise<void> {
    const env = {
      DATABASE_URL: String(db().connection.connectionString), SETTLE_DATA_DIR: dir, SETTLE_CONFIG_DIR: undefined,
      SETTLE_PAY_LINK_KEYS: `1:${Buffer.alloc(32, 9).toString('base64url')}`,
      SETTLE_ENCRYPTION_KEYS: `k1:${phiKey.toString('base64')}`, SETTLE_BLIND_INDEX_KEY: blindKey.toString('base64'),
    };
    const out = join(dir, 'agency.csv');
    const exported = await runCli(['agency', 'export', '--practice', 'agency-test', '--out', out], env);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stderr, /1 balance sent to the agency \(export [0-9a-f-]{36}, sha256 [0-9a-f]{64}\)/);
    const rows = readFileSync(out, 'utf8').split('\r\n');
    assert.match(rows[1]!, /^ACCT-P3,"'=HYPERLINK\(""x""\) Smith, Jr\.",1 Main St,Apt 2,Chicago,IL,60601,\+1 312 555 0188,80\.00,USD,2026-03-12,$/);
    assert.equal(await status(ids.later), 'sent_to_agency');
    const audited = (await new AuditLog(db(), clock).list(practiceId)).filter((e) => e.action === 'agency.export').at(-1);
    assert.equal(audited?.actor, 'cli');

    const refused = await runCli(['agency', 'recall', '--practice', 'agency-test', ids.small], env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`${ids.small} is open, not sent_to_agency`));
    const recalled = await runCli(['agency', 'recall', '--practice', 'agency-test', ids.later, '--note', 'paid the agency directly'], env);
    assert.equal(recalled.code, 0, recalled.stderr);
    assert.equal(await status(ids.later), 'open');
  }

  it('a recall names every balance at fault and changes nothing; a good one returns the balance, audited, without restarting outreach', async () => {
    const stranger = randomUUID();
    const refused = await call('/agency/recalls', staff, { method: 'POST', body: JSON.stringify({ balanceIds: [ids.maria, ids.small, stranger] }) });
    assert.equal(refused.status, 400);
    const problem = JSON.parse(refused.text) as { code: string; errors: { path: string; message: string }[] };
    assert.deepEqual(problem.errors, [
      { path: '/balanceIds/1', message: 'is open, not sent_to_agency' },
      { path: '/balanceIds/2', message: 'is not a balance of this practice' },
    ]);
    assert.equal(await status(ids.maria), 'sent_to_agency', 'all or nothing');

    const recalled = await call('/agency/recalls', staff, { method: 'POST', body: JSON.stringify({ balanceIds: [ids.maria], note: 'patient called' }) });
    assert.equal(recalled.status, 200, recalled.text);
    assert.deepEqual(JSON.parse(recalled.text), { recalled: [ids.maria] });
    assert.equal(await status(ids.maria), 'open');
    const last = (await new LedgerRepository(db().pool, cipher, clock).statusHistory(ids.maria)).at(-1)!;
    assert.deepEqual([last.fromStatus, last.toStatus, last.note], ['sent_to_agency', 'open', 'recalled from the agency: patient called']);
    assert.match(last.actor, /^apikey:/);
    assert.ok((await new AuditLog(db(), clock).list(practiceId)).some((e) => e.action === 'agency.recall' && e.entityId === ids.maria));
    assert.ok(!JSON.parse((await call('/agency/ready', staff)).text).balances.some((b: { balanceId: string }) => b.balanceId === ids.maria), 'not offered again');
    const afterRecall = await plan(110);
    assert.ok(![...afterRecall.sent, ...afterRecall.agencyReady].some((s) => s.balanceId === ids.maria), 'its cadence is finished');
  });
});
