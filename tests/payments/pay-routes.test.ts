import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { SANDBOX_WEBHOOK_SECRET, signSandboxEvent } from '../../src/payments/sandbox.ts';
import { signStripePayload } from '../../src/payments/stripe-webhook.ts';
import { AuditLog } from '../../src/store/audit.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { PaymentRepository } from '../../src/store/payments.ts';
import { StaffTaskRepository } from '../../src/store/staff-tasks.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { cipher, csrfOf, seedPayHousehold, startPayApp, TEST_WEBHOOK_SECRET, verified, Visitor, type PayApp, type PayHousehold } from './pay-fixtures.ts';
import { paymentRows, pendingPayment, sandboxCheckoutEvents } from './webhook-fixtures.ts';

const DAY = 24 * 60 * 60 * 1000;

describeOnEachDatabase('the pay page over HTTP', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let app: PayApp;
  let h: PayHousehold;
  let dir = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'settle-payroutes-'));
    h = await seedPayHousehold(db(), clock, 'pay-routes');
    app = await startPayApp(db(), clock, 'pay-routes', dir);
  });
  after(async () => {
    await app?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const ledger = () => new LedgerRepository(db().pool, cipher, clock);

  it('asks who you are before showing anything, and audits the open', async () => {
    const link = await app.link(h);
    const page = await new Visitor().get(link);
    assert.equal(page.status, 200);
    assert.match(page.text, /<label for="birthDate">Date of birth/);
    assert.match(page.text, /<label for="zip">ZIP code/);
    for (const secret of ['$150.00', '$100.00', 'Riverside', 'Medical services']) assert.ok(!page.text.includes(secret), `${secret} is not shown before the check`);
    assert.equal(page.res.headers.get('cache-control'), 'no-store');
    assert.match(page.res.headers.get('content-security-policy') ?? '', /form-action 'self'/);
    const linkId = Buffer.from(link.split('/p/')[1]!, 'base64url').subarray(1, 10).toString('hex');
    const opens = (await new AuditLog(db(), clock).list(h.practiceId)).filter((e) => e.action === 'paylink.open' && e.entityId === linkId);
    assert.equal(opens.length, 1);
  });

  it('answers an expired, tampered, unknown or malformed link with the same neutral page', async () => {
    const link = await app.link(h);
    const token = link.split('/p/')[1]!;
    const tampered = `${token.slice(0, 20)}${token[20] === 'A' ? 'B' : 'A'}${token.slice(21)}`;
    const unknown = Buffer.from(token, 'base64url');
    unknown[3] = unknown[3]! ^ 0xff;
    const pages = [];
    for (const t of [tampered, unknown.toString('base64url'), 'not-a-token']) pages.push(await new Visitor().get(`${app.url}/p/${t}`));
    clock.advance(31 * DAY);
    pages.push(await new Visitor().get(link));
    clock.advance(-31 * DAY);
    for (const page of pages) {
      assert.equal(page.status, 404);
      assert.equal(page.text, pages[0]!.text);
    }
    assert.match(pages[0]!.text, /This link is invalid or has expired/);
  });

  it('locks the link after five wrong birth dates, even against the right one', async () => {
    const household = await seedPayHousehold(db(), clock, 'pay-lock');
    const link = await app.link(household);
    const visitor = new Visitor();
    const csrf = csrfOf((await visitor.get(link)).text);
    const statuses: number[] = [];
    let last = '';
    for (let i = 0; i < 5; i++) {
      const answer = await visitor.post(`${link}/verify`, { csrf, birthDate: '01/01/1990', zip: '' });
      statuses.push(answer.status);
      last = answer.text;
      if (i === 0) assert.match(answer.text, /doesn’t match what we have on file\. 4 tries left/);
    }
    assert.deepEqual(statuses, [422, 422, 422, 422, 429]);
    assert.match(last, /Too many tries/);
    const right = await visitor.post(`${link}/verify`, { csrf, birthDate: '03/07/1984', zip: '' });
    assert.equal(right.status, 429, 'locked: not even compared');
    assert.equal(visitor.cookie, undefined, 'no session was given');
    assert.equal((await visitor.get(link)).status, 429);
    clock.advance(DAY + 1000);
    const later = await visitor.post(`${link}/verify`, { csrf, birthDate: '1984-03-07', zip: '' });
    clock.advance(-(DAY + 1000));
    assert.equal(later.status, 303, 'the lock ends after 24 hours');
  });

  it('counts wrong answers sent all at once one by one: five, then locked', async () => {
    const household = await seedPayHousehold(db(), clock, 'pay-burst');
    const link = await app.link(household);
    const visitor = new Visitor();
    const csrf = csrfOf((await visitor.get(link)).text);
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => visitor.post(`${link}/verify`, { csrf, birthDate: `01/${String(i + 1).padStart(2, '0')}/1990`, zip: '' })));
    const statuses = answers.map((a) => a.status).sort();
    assert.deepEqual(statuses, [422, 422, 422, 422, 429, 429, 429, 429, 429, 429]);
    const { rows } = await db().pool.query<{ n: number }>(
      'SELECT jsonb_array_length(identity_failures) AS n FROM pay_links WHERE guarantor_id = $1', [household.guarantorId],
    );
    assert.equal(rows[0]!.n, 5);
  });

  it('does not count a typo that is not a date, and accepts the ZIP instead', async () => {
    const link = await app.link(h);
    const visitor = new Visitor();
    const csrf = csrfOf((await visitor.get(link)).text);
    const typo = await visitor.post(`${link}/verify`, { csrf, birthDate: '31/31/84', zip: '' });
    assert.equal(typo.status, 422);
    assert.match(typo.text, /role="alert">Enter your date of birth as MM\/DD\/YYYY/);
    const zip = await visitor.post(`${link}/verify`, { csrf, birthDate: '', zip: '02139' });
    assert.equal(zip.status, 303);
    const cookie = zip.res.headers.get('set-cookie') ?? '';
    assert.match(cookie, /^settle_pay=[0-9a-f]{18}\.\d+\.[A-Za-z0-9_-]{32};/);
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Lax/);
  });

  it('shows the practice, the amount due and dated "Medical services" lines, in English and Spanish', async () => {
    const link = await app.link(h);
    const en = await verified(new Visitor(), link);
    assert.match(en, /<html lang="en">/);
    assert.match(en, /Riverside Family Clinic/);
    assert.match(en, /\(617\) 555-0100/);
    assert.match(en, /\$150\.00/);
    assert.match(en, /Jan 5, 2026<\/td><td>Medical services<\/td><td class="amt">\$100\.00/);
    assert.match(en, /Feb 10, 2026<\/td><td>Medical services/);
    assert.ok(!/99213|Office visit/.test(en), 'never a code or description');
    assert.match(en, /Pay in full \(\$150\.00\)/);
    assert.match(en, /6 monthly payments of \$25\.00/);
    assert.match(en, /role="note">Sandbox — no real payment/);
    const visitor = new Visitor({ 'accept-language': 'es-MX,es;q=0.9,en;q=0.5' });
    const page = await visitor.get(link);
    assert.match(page.text, /<html lang="es">/);
    assert.match(page.text, /Fecha de nacimiento/);
    const es = await verified(visitor, link, 'es');
    assert.match(es, /Servicios médicos/);
    assert.match(es, /Pagar el total/);
    assert.match(es, /US\$150\.00|\$150\.00/);
  });

  it('refuses a form posted without the session’s CSRF token, creating nothing', async () => {
    const link = await app.link(h);
    const visitor = new Visitor();
    await verified(visitor, link);
    const before = await db().pool.query('SELECT count(*)::int AS n FROM payments');
    const forged = await visitor.post(`${link}/pay`, { choice: 'full', csrf: 'x'.repeat(32) });
    assert.equal(forged.status, 403);
    const stranger = await new Visitor().post(`${link}/pay`, { choice: 'full', csrf: csrfOf(await verified(new Visitor(), link)) });
    assert.equal(stranger.status, 403, 'a token from another session does not work without its cookie');
    const after = await db().pool.query('SELECT count(*)::int AS n FROM payments');
    assert.equal(after.rows[0].n, before.rows[0].n);
  });

  it('explains a part amount it cannot take', async () => {
    const link = await app.link(h);
    const visitor = new Visitor();
    const page = await verified(visitor, link);
    const answer = await visitor.post(`${link}/pay`, { choice: 'part', amount: '200', csrf: csrfOf(page) });
    assert.equal(answer.status, 422);
    assert.match(answer.text, /id="amount-error" role="alert">That is more than the amount due/);
    assert.match(answer.text, /aria-invalid="true"/);
  });

  it('pays in full through the sandbox checkout: declined first, then paid, posted once with its write-back', async () => {
    const household = await seedPayHousehold(db(), clock, 'pay-full');
    const link = await app.link(household);
    const visitor = new Visitor();
    const page = await verified(visitor, link);
    const chosen = await visitor.post(`${link}/pay`, { choice: 'full', csrf: csrfOf(page) });
    assert.equal(chosen.status, 303);
    const checkoutUrl = chosen.res.headers.get('location')!;
    assert.match(checkoutUrl, new RegExp(`^${app.url}/sandbox/checkout/cs_sandbox_`));
    assert.equal((await new Visitor().get(checkoutUrl)).status, 404, 'only the visitor who verified sees the sandbox checkout');
    const sandbox = await visitor.get(checkoutUrl);
    assert.match(sandbox.text, /Sandbox — no real payment/);
    assert.match(sandbox.text, /\$150\.00/);
    const declined = await visitor.post(checkoutUrl, { csrf: csrfOf(sandbox.text), outcome: 'card_declined' });
    assert.equal(declined.status, 402);
    assert.match(declined.text, /Your card was declined/);
    assert.equal((await ledger().getBalance(household.olderBalanceId))!.status, 'open');
    const paid = await visitor.post(checkoutUrl, { csrf: csrfOf(sandbox.text), outcome: 'succeeded' });
    assert.equal(paid.status, 303);
    const done = paid.res.headers.get('location')!;
    assert.match(done, /\/pay\/complete\?payment=[0-9a-f-]{36}$/);
    const paymentId = new URL(done).searchParams.get('payment')!;
    const payment = (await new PaymentRepository(db().pool, clock).get(household.practiceId, paymentId))!;
    assert.equal(payment.status, 'succeeded');
    assert.deepEqual(payment.amount, money(15_000, 'USD'));
    for (const id of [household.olderBalanceId, household.newerBalanceId]) {
      const balance = (await ledger().getBalance(id))!;
      assert.equal(balance.patientAmount.amount, 0);
      assert.equal(balance.status, 'paid');
    }
    const again = await visitor.post(checkoutUrl, { csrf: csrfOf(sandbox.text), outcome: 'succeeded' });
    assert.equal(again.status, 303, 'pressing Pay twice changes nothing');
    const rows = await paymentRows(db(), household.practiceId, paymentId);
    assert.equal(rows.entries.length, 2);
    assert.deepEqual(rows.outbox.map((o) => [o.kind, o.amount]), [['payment', 15_000]]);
    const thanks = await visitor.get(done);
    assert.match(thanks.text, /Thank you: your payment was received/);
  });

  it('takes part of the amount: the checkout is for what was typed', async () => {
    const household = await seedPayHousehold(db(), clock, 'pay-part');
    const link = await app.link(household);
    const visitor = new Visitor();
    const page = await verified(visitor, link);
    const chosen = await visitor.post(`${link}/pay`, { choice: 'part', amount: '$40.25', csrf: csrfOf(page) });
    assert.equal(chosen.status, 303);
    const sandbox = await visitor.get(chosen.res.headers.get('location')!);
    assert.match(sandbox.text, /\$40\.25/);
    const { rows } = await db().pool.query<{ amount: string }>('SELECT amount_minor::text AS amount FROM payments WHERE guarantor_id = $1', [household.guarantorId]);
    assert.deepEqual(rows.map((r) => Number(r.amount)), [4025]);
  });

  it('starts a payment plan: the checkout is for the first installment and saves the card', async () => {
    const household = await seedPayHousehold(db(), clock, 'pay-plan');
    const link = await app.link(household);
    const visitor = new Visitor();
    const page = await verified(visitor, link);
    const wrong = await visitor.post(`${link}/pay`, { choice: 'plan', months: '7', csrf: csrfOf(page) });
    assert.equal(wrong.status, 422, 'a plan that is not offered');
    assert.match(wrong.text, /id="plan-error" role="alert">Choose one of the plans shown/);
    const chosen = await visitor.post(`${link}/pay`, { choice: 'plan', months: '3', csrf: csrfOf(page) });
    assert.equal(chosen.status, 303);
    const checkoutUrl = chosen.res.headers.get('location')!;
    const sandbox = await visitor.get(checkoutUrl);
    assert.match(sandbox.text, /\$50\.00/);
    const { rows } = await db().pool.query<{ request: { params: { payment_intent_data: { setup_future_usage: string }; metadata: Record<string, string> } } }>(
      'SELECT request FROM pay_checkouts WHERE session_id = $1', [checkoutUrl.split('/').pop()],
    );
    assert.equal(rows[0]!.request.params.payment_intent_data.setup_future_usage, 'off_session');
    assert.match(rows[0]!.request.params.metadata.settle_plan_id!, /^[0-9a-f-]{36}$/);
    const paid = await visitor.post(checkoutUrl, { csrf: csrfOf(sandbox.text), outcome: 'succeeded' });
    assert.equal(paid.status, 303);
    const older = (await ledger().getBalance(household.olderBalanceId))!;
    const newer = (await ledger().getBalance(household.newerBalanceId))!;
    assert.equal(older.patientAmount.amount + newer.patientAmount.amount, 10_000, '$50.00 of $150.00 paid');
    const onPlan = await visitor.get(link);
    assert.match(onPlan.text, /You are on a payment plan/);
  });

  for (const [kind, reason, title] of [['dispute', 'dispute', 'We received your question about this bill'], ['assistance', 'staff', 'We received your request for financial assistance']] as const) {
    it(`puts the bill on hold and opens a staff task on "${kind}"`, async () => {
      const household = await seedPayHousehold(db(), clock, `pay-${kind}`);
      const link = await app.link(household);
      const visitor = new Visitor();
      const page = await verified(visitor, link);
      const form = page.slice(page.indexOf(`action="/p/${link.split('/p/')[1]}/${kind}"`));
      const answer = await visitor.post(`${link}/${kind}`, { csrf: csrfOf(form), note: 'I was told insurance would cover this.' });
      assert.equal(answer.status, 200);
      assert.match(answer.text, new RegExp(title));
      for (const id of [household.olderBalanceId, household.newerBalanceId]) {
        const balance = (await ledger().getBalance(id))!;
        assert.equal(balance.status, 'on_hold');
        assert.equal(balance.holdReason, reason);
      }
      const tasks = (await new StaffTaskRepository(db().pool, clock).list(household.practiceId)).filter((t) => t.guarantorId === household.guarantorId);
      assert.equal(tasks.length, 1);
      assert.equal(tasks[0]!.kind, kind);
      assert.equal(tasks[0]!.note, 'I was told insurance would cover this.');
      const held = await visitor.get(link);
      assert.match(held.text, /on hold while we review it/);
      assert.ok(!held.text.includes('Pay in full'), 'nothing to pay while on hold');
    });
  }

  it('downloads the statement as a PDF', async () => {
    const link = await app.link(h);
    const visitor = new Visitor();
    await verified(visitor, link);
    const refused = await new Visitor().get(`${link}/statement.pdf`);
    assert.equal(refused.status, 403);
    const res = await fetch(`${link}/statement.pdf`, { headers: { cookie: visitor.cookie! } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/pdf');
    const pdf = Buffer.from(await res.arrayBuffer());
    assert.equal(pdf.subarray(0, 5).toString(), '%PDF-');
    if (existsSync('/usr/bin/pdftotext')) {
      const file = join(dir, 'statement.pdf');
      await writeFile(file, pdf);
      const text = execFileSync('/usr/bin/pdftotext', [file, '-'], { encoding: 'utf8' });
      assert.match(text, /Medical services/);
      assert.ok(!/99213|Office visit/.test(text));
    }
  });

  it('mounts the Stripe webhook: a tampered signature is a 400, the same event three times posts once', async () => {
    const household = h; // the practice the endpoint serves
    const webhooks = new URL('/webhooks/stripe', app.url).toString();
    const payment = await pendingPayment(db(), clock, household, money(15_000, 'USD'));
    const [succeeded] = sandboxCheckoutEvents(clock, payment);
    const payload = JSON.stringify(succeeded);
    const header = signStripePayload(payload, Math.floor(clock.now().getTime() / 1000), TEST_WEBHOOK_SECRET);
    const tampered = await fetch(webhooks, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': header }, body: payload.replace('15000', '15001') });
    assert.equal(tampered.status, 400);
    assert.equal(((await tampered.json()) as { code: string }).code, 'invalid_signature');
    const outcomes = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(webhooks, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': header }, body: payload });
      assert.equal(res.status, 200);
      outcomes.push(((await res.json()) as { duplicate: boolean }).duplicate);
    }
    assert.deepEqual(outcomes, [false, true, true]);
    const rows = await paymentRows(db(), household.practiceId, payment.id);
    assert.equal(rows.entries.length, 2, 'one entry per balance, once');
    assert.equal(rows.outbox.length, 1);
    // Sandbox mode: the sandbox's own secret is accepted at the same endpoint.
    const [, completed] = sandboxCheckoutEvents(clock, payment);
    const signed = signSandboxEvent(completed!, { clock, secret: SANDBOX_WEBHOOK_SECRET });
    const res = await fetch(webhooks, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signed.header }, body: signed.payload });
    assert.equal(res.status, 200);
  });
});
