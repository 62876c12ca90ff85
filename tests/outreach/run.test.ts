import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { before, after, it } from 'node:test';
import express from 'express';
import { problemHandler } from '../../src/api/problem.ts';
import { mountRoutes } from '../../src/api/routes.ts';
import { silentLogger } from '../../src/config/logger.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import type { LedgerLine } from '../../src/domain/ledger.ts';
import { parseMoney } from '../../src/domain/money.ts';
import { parsePolicy } from '../../src/domain/policy.ts';
import { decodePayLink, payLinkKeyRing } from '../../src/domain/pay-link.ts';
import { outreachPlanJob, planPractice } from '../../src/outreach/run.ts';
import { maskRecipient, outreachRoutes } from '../../src/outreach/routes.ts';
import { ApiKeyRepository } from '../../src/store/api-keys.ts';
import { AuditLog } from '../../src/store/audit.ts';
import { withTransaction } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { OutreachDeliveryStore } from '../../src/store/outreach-delivery.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { withoutIds } from '../support/phi.ts';

const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
const policyDocument = JSON.parse(readFileSync(new URL('../../policies/default.json', import.meta.url), 'utf8')) as Record<string, unknown>;
const policy = parsePolicy(policyDocument);
const logger = silentLogger();
const payLinkKeys = payLinkKeyRing(1, [[1, randomBytes(32)]]);
const line = (lineKey: string, kind: LedgerLine['kind'], amount: string, serviceDate: string, extra: Partial<LedgerLine> = {}): LedgerLine => ({
  lineKey, kind, amount: parseMoney(amount, 'USD'), serviceDate, payer: 'patient', serviceCode: null, description: null, ...extra,
});

// America/Chicago is UTC-5 in April 2026. 2026-04-06 is a Monday (no holiday); day 7 is Monday 2026-04-13.
const MON_23H = new Date('2026-04-07T04:00:00Z'); // Mon 2026-04-06 23:00 local: quiet hours
const TUE_10H = new Date('2026-04-07T15:00:00Z'); // Tue 2026-04-07 10:00 local
const DAY7_11H = new Date('2026-04-13T16:00:00Z'); // Mon 2026-04-13 11:00 local

describeOnEachDatabase('outreach planning', (db) => {
  const clock = new ManualClock(MON_23H);
  let practiceId = '';
  let ledger: LedgerRepository;
  let maria = { balanceId: '', patientId: '', guarantorId: '' };
  let jose = { balanceId: '', patientId: '', accountId: '', guarantorId: '' };
  const plan = () => planPractice({ db: db(), cipher, clock, logger, practiceId, policy, payLinkKeys, publicUrl: 'https://settle.example.org/' });
  const outboxCount = async () => Number((await db().pool.query('SELECT count(*) AS n FROM outbox WHERE practice_id = $1', [practiceId])).rows[0].n);

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'outreach-test', name: 'Riverside Family Medicine', timeZone: 'America/Chicago', phone: '(555) 010-0199' })).id;
    ledger = new LedgerRepository(db().pool, cipher, clock);
    const outreach = new OutreachRepository(db().pool, cipher, clock);
    const person = async (mrn: string, contact: Parameters<LedgerRepository['upsertPatient']>[2], charges: LedgerLine[]) => {
      const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: mrn }, contact);
      const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
      const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: `A-${mrn}` }, patientId });
      const posted = await withTransaction(db(), (tx) =>
        ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: `inv-${mrn}`, versionId: '1', lastUpdated: null }, { accountId, guarantorId, patientId }, charges));
      return { balanceId: posted.balanceIds[0]!, patientId, accountId, guarantorId };
    };
    maria = await person('P1', {
      name: { family: 'Gonzalez', given: ['Maria'] }, phones: ['(617) 555-0134'], email: 'maria@example.com', language: 'en',
      address: { lines: ['1 Main St'], city: 'Chicago', state: 'IL', postalCode: '60601' },
    }, [line('c1', 'charge', '150.00', '2026-03-20', { serviceCode: '99213', description: 'Office visit: diabetes follow-up' })]);
    jose = await person('P2', { name: { given: ['José'], family: 'Pérez' }, phones: ['312-555-0188'], email: 'jose@example.net', language: 'es-MX' },
      [line('c1', 'charge', '80.00', '2026-03-21', { serviceCode: 'E11.9', description: 'Type 2 diabetes' })]);
    for (const [phone, email] of [['+16175550134', 'Maria@Example.com'], ['(312) 555-0188', 'jose@example.net']] as const) {
      await outreach.recordConsent(practiceId, { channel: 'sms', address: phone, source: 'intake-form', at: new Date('2026-04-01T12:00:00Z') });
      await outreach.recordConsent(practiceId, { channel: 'email', address: email, source: 'intake-form', at: new Date('2026-04-01T12:00:00Z') });
    }
  });

  it('at 23:00 local defers day 0 to 08:00 (quiet hours) and records nothing', async () => {
    const result = await plan();
    assert.equal(result.balances, 2);
    assert.equal(result.sent.length, 0);
    assert.equal(result.deferred.length, 4, 'sms and email of two balances');
    for (const d of result.deferred) {
      assert.equal(d.rule, 'quiet-hours');
      assert.equal(d.until.toISOString(), '2026-04-07T13:00:00.000Z', '08:00 in Chicago');
    }
    assert.equal(await outboxCount(), 0);
    assert.equal((await new OutreachRepository(db().pool, cipher, clock).attempts(maria.balanceId)).length, 0);
  });

  it('at 10:00 local writes sms and email to the outbox with only the allow-listed values, in the patient language', async () => {
    clock.set(TUE_10H);
    const result = await plan();
    assert.equal(result.sent.length, 4);
    assert.deepEqual(result.sent.filter((s) => s.balanceId === maria.balanceId).map((s) => s.channel).sort(), ['email', 'sms']);
    const outbox = await new OutreachDeliveryStore(db().pool, cipher, clock).list(practiceId);
    assert.equal(outbox.length, 4);
    const mariaSms = outbox.find((m) => m.balanceId === maria.balanceId && m.channel === 'sms')!;
    assert.equal(mariaSms.recipient, '(617) 555-0134');
    assert.equal(mariaSms.language, 'en');
    assert.match(mariaSms.body, /Maria/);
    assert.match(mariaSms.body, /\$150\.00/);
    // A real signed pay link for Maria's guarantor (issued once, reused by her email), not a placeholder.
    const link = /https:\/\/settle\.example\.org\/p\/([A-Za-z0-9_-]{32})(?![A-Za-z0-9_-])/.exec(mariaSms.body);
    assert.ok(link, `a pay link in ${mariaSms.body}`);
    const decoded = decodePayLink(link[1]);
    assert.ok(decoded);
    const row = (await db().pool.query('SELECT guarantor_id FROM pay_links WHERE link_id = $1', [decoded.linkId])).rows[0] as { guarantor_id: string } | undefined;
    assert.equal(row?.guarantor_id, maria.guarantorId);
    assert.ok(outbox.find((m) => m.balanceId === maria.balanceId && m.channel === 'email')!.body.includes(link[0]), 'the email carries the same link');
    const mariaEmail = outbox.find((m) => m.balanceId === maria.balanceId && m.channel === 'email')!;
    assert.match(mariaEmail.body, /Apr 6, 2026/, 'statement date is day 0');
    assert.match(mariaEmail.body, /\(555\) 010-0199/);
    for (const m of outbox) {
      for (const text of [m.body, m.subject ?? '', m.html ?? '']) {
        assert.doesNotMatch(text, /99213|E11\.9|diabetes|Office visit|Gonzalez|P[ée]rez/i, 'no code, description or last name');
      }
    }
    const joseSms = outbox.find((m) => m.balanceId === jose.balanceId && m.channel === 'sms')!;
    assert.equal(joseSms.language, 'es');
    assert.match(joseSms.body, /Hola José, su saldo de \$80\.00: https:\/\/settle\.example\.org\/p\//);
    const joseEmail = outbox.find((m) => m.balanceId === jose.balanceId && m.channel === 'email')!;
    assert.equal(joseEmail.language, 'es');
    assert.match(joseEmail.subject!, /Su estado de cuenta/);
    // Stored encrypted: no phone or email in clear anywhere in the outreach tables.
    const raw = JSON.stringify((await db().pool.query('SELECT * FROM outbox')).rows) + JSON.stringify((await db().pool.query('SELECT * FROM contact_consents')).rows);
    assert.doesNotMatch(raw, /555-0134|5550134|maria@|jose@/i);
  });

  it('running again the same day (as the job) sends nothing twice', async () => {
    clock.set(new Date(TUE_10H.getTime() + 3 * 3600_000));
    const before = await outboxCount();
    const job = outreachPlanJob({ db: db(), cipher, clock, logger, defaultPolicy: policyDocument, payLinkKeys, publicUrl: 'https://settle.example.org' });
    assert.equal(job.name, 'outreach.plan');
    await job.run({ practiceId }, { jobId: 'j1', failures: 0 });
    await job.run({}, { jobId: 'j2', failures: 0 });
    const again = await plan();
    assert.equal(again.sent.length + again.suppressed.length + again.deferred.length, 0);
    assert.equal(await outboxCount(), before);
    assert.equal((await new OutreachRepository(db().pool, cipher, clock).attempts(maria.balanceId)).length, 2);
  });

  it('after STOP the next step\'s text is suppressed with rule opt-out; a payment that zeroes a balance stops its next step', async () => {
    clock.set(new Date('2026-04-08T18:00:00Z'));
    await new OutreachRepository(db().pool, cipher, clock).recordOptOut(practiceId, { channel: 'sms', address: '+1 617 555 0134', source: 'keyword:STOP', at: clock.now() });
    await withTransaction(db(), (tx) =>
      ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Payment', sourceId: 'pay-P2', versionId: '1', lastUpdated: null },
        { accountId: jose.accountId, guarantorId: jose.guarantorId, patientId: jose.patientId }, [line('p1', 'payment', '80.00', '2026-04-08')]));
    assert.equal((await ledger.getBalance(jose.balanceId))?.status, 'paid');
    const outboxBefore = await outboxCount();

    clock.set(DAY7_11H);
    const result = await plan();
    assert.equal(result.balances, 1, 'the paid balance is no longer outreach-eligible');
    assert.equal(result.sent.length, 0);
    assert.deepEqual(result.suppressed.map((s) => [s.balanceId, s.stepId, s.channel, s.rule]), [[maria.balanceId, 'first-reminder', 'sms', 'opt-out']]);
    assert.equal(await outboxCount(), outboxBefore);
    const attempts = await new OutreachRepository(db().pool, cipher, clock).attempts(maria.balanceId);
    const suppressed = attempts.find((a) => a.stepId === 'first-reminder')!;
    assert.equal(suppressed.status, 'suppressed');
    assert.equal(suppressed.rule, 'opt-out');
    assert.doesNotMatch(suppressed.reason!, /617|0134/);
    assert.ok(suppressed.verdicts.some((v) => v.rule === 'opt-out' && v.verdict === 'suppress'));
    assert.equal((await new OutreachRepository(db().pool, cipher, clock).attempts(jose.balanceId)).filter((a) => a.stepId !== 'statement-ready').length, 0);
    // Suppressed once: the next run does not record it again.
    assert.equal((await plan()).suppressed.length, 0);
  });

  it('serves the outbox, timeline and opt-outs to staff with recipients masked, and audits a manual opt-out', async () => {
    const keys = new ApiKeyRepository(db().pool, clock);
    const staff = (await keys.create(practiceId, 'staff key', 'staff')).secret;
    const integration = (await keys.create(practiceId, 'integration key', 'integration')).secret;
    const app = express();
    app.use(express.json());
    const router = express.Router();
    mountRoutes(router, outreachRoutes({ db: db(), cipher, clock }), (presented) => keys.authenticate(presented));
    app.use(router);
    app.use(problemHandler(logger));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
    const call = async (path: string, key: string, init: RequestInit = {}) => {
      const response = await fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });
      return { status: response.status, text: await response.text() };
    };

    const outbox = await call('/outbox?limit=3', staff);
    assert.equal(outbox.status, 200);
    const page = JSON.parse(outbox.text) as { messages: { channel: string; recipient: string; balanceId: string }[]; nextOffset: number | null };
    assert.equal(page.messages.length, 3);
    assert.equal(page.nextOffset, 3);
    assert.ok(page.messages.some((m) => m.recipient === '***-***-0134' || m.recipient === '***-***-0188' || m.recipient.startsWith('m***@') || m.recipient.startsWith('j***@')));
    for (const m of page.messages) assert.match(m.recipient, /^\*\*\*-\*\*\*-\d{4}$|^[a-z]\*\*\*@example\.(com|net)$/);
    assert.doesNotMatch(withoutIds(outbox.text), /617|312-555|maria@|jose@/);
    const second = JSON.parse((await call('/outbox?limit=3&offset=3', staff)).text) as { messages: unknown[]; nextOffset: number | null };
    assert.equal(second.messages.length, 1);
    assert.equal(second.nextOffset, null);
    assert.equal((await call('/outbox', integration)).status, 403);
    // Nothing has delivered them yet: every message shows its delivery state (queued until the delivery job looks).
    const states = JSON.parse((await call('/outbox', staff)).text) as { messages: { state: string; deliveryAttempts: number }[] };
    assert.deepEqual([...new Set(states.messages.map((m) => `${m.state}/${m.deliveryAttempts}`))], ['queued/0']);
    assert.equal(JSON.parse((await call('/outbox?state=delivered', staff)).text).messages.length, 0);
    assert.equal((await call('/outbox?state=lost', staff)).status, 400);

    const timeline = await call(`/balances/${maria.balanceId}/timeline`, staff);
    assert.equal(timeline.status, 200);
    const events = (JSON.parse(timeline.text) as { events: { stepId: string; channel: string; status: string; rule: string | null; reason: string | null; outboxId: string | null }[] }).events;
    assert.deepEqual(events.map((e) => [e.stepId, e.channel, e.status, e.rule]), [
      ['statement-ready', 'sms', 'sent', null], ['statement-ready', 'email', 'sent', null], ['first-reminder', 'sms', 'suppressed', 'opt-out'],
    ]);
    assert.ok(events[0]!.outboxId);
    assert.ok(events[2]!.reason);
    assert.equal((await call('/balances/00000000-0000-0000-0000-000000000000/timeline', staff)).status, 404);
    assert.equal((await call('/balances/not-a-uuid/timeline', staff)).status, 404);

    const created = await call('/opt-outs', staff, { method: 'POST', body: JSON.stringify({ channel: 'email', address: 'Maria@Example.com' }) });
    assert.equal(created.status, 201);
    const optOut = JSON.parse(created.text) as { id: string; address: string; source: string };
    assert.equal(optOut.address, 'M***@example.com');
    assert.match(optOut.source, /^staff:apikey:/);
    assert.equal((await call('/opt-outs', staff, { method: 'POST', body: JSON.stringify({ channel: 'sms', address: 'call me' }) })).status, 400);
    const list = await call('/opt-outs', staff);
    assert.equal(list.status, 200);
    const optOuts = (JSON.parse(list.text) as { optOuts: { channel: string; address: string; source: string }[] }).optOuts;
    assert.deepEqual(optOuts.map((o) => [o.channel, o.address, o.source.split(':')[0]]), [['email', 'M***@example.com', 'staff'], ['sms', '***-***-0134', 'keyword']]);
    assert.doesNotMatch(withoutIds(list.text), /617|maria@/i);
    const events2 = await new AuditLog(db(), clock).list(practiceId);
    const audited = events2.find((e) => e.action === 'optout.create');
    assert.equal(audited?.entityId, optOut.id);
    assert.doesNotMatch(JSON.stringify(audited), /maria/i);

    // The email opt-out now suppresses the day-21 email.
    clock.set(new Date('2026-04-27T16:00:00Z'));
    const result = await planPractice({ db: db(), cipher, clock, logger, practiceId, policy, payLinkKeys });
    assert.deepEqual(result.suppressed.map((s) => [s.stepId, s.channel, s.rule]), [['second-reminder', 'email', 'opt-out']]);
  });
});

it('masks recipients', () => {
  assert.equal(maskRecipient('sms', '+1 (617) 555-0134'), '***-***-0134');
  assert.equal(maskRecipient('email', 'maria@Example.com'), 'm***@example.com');
  assert.equal(maskRecipient('letter', '1 Main St\nChicago, IL 60601'), '*** (mailing address)');
  assert.equal(maskRecipient('sms', null), null);
});
