/**
 * Payment plans end to end on a real database: the patient picks a plan, pays installment 1 on (the Stripe fake's)
 * Checkout, the webhook activates the plan, and the `plans.charge-due` Agenda job charges the rest off-session
 * through the real StripeGateway; Stripe's events come back through the real webhook processing.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, mock, test } from 'node:test';
import pg from 'pg';
import { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { checkoutSessionParams } from '../../src/payments/checkout.ts';
import { chargeInstant, offeredPlans } from '../../src/domain/payment-plan.ts';
import { chargeDueInstallments, payOffPlan, PLAN_JOBS, planInstallmentsJob, type PlanJobDeps } from '../../src/payments/plan-jobs.ts';
import { proposePlan, PlanProposalError } from '../../src/payments/plan-service.ts';
import { SandboxGateway } from '../../src/payments/sandbox-gateway.ts';
import { StripeGateway } from '../../src/payments/stripe-gateway.ts';
import { processStripeWebhook } from '../../src/payments/webhook-route.ts';
import { JobRegistry, Scheduler } from '../../src/scheduler/scheduler.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { OutreachDeliveryStore } from '../../src/store/outreach-delivery.ts';
import { PaymentRepository } from '../../src/store/payments.ts';
import { planState, PlanRepository } from '../../src/store/plans.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { startStripeFake, type StripeFake } from '../support/stripe-fake/server.ts';
import { stripeSpecMissing } from '../support/stripe-fake/spec.ts';
import { cipher, seedHousehold, silentLogger, type Household } from './webhook-fixtures.ts';

const SECRET = 'whsec_plans_test';
const ZONE = 'America/New_York';

describeOnEachDatabase('Payment plans', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let fake: StripeFake;
  let gateway: StripeGateway;
  let delivered = 0;
  before(async () => {
    fake = await startStripeFake({ clock, webhookSecret: SECRET });
    gateway = new StripeGateway('sk_test_plans', { host: '127.0.0.1', port: fake.port, protocol: 'http', maxNetworkRetries: 0 });
  });
  after(() => fake.close());
  // Each test's plan ends with it, so the next test's sweeps charge only their own plan.
  afterEach(async () => {
    await db().pool.query("UPDATE payment_plans SET status = 'cancelled' WHERE status IN ('active', 'pending')");
  });

  /** Stripe sends every event it queued since last time to Settle's webhook processing. */
  async function deliverEvents(practiceId: string): Promise<string[]> {
    const outcomes: string[] = [];
    for (; delivered < fake.events.length; delivered++) {
      const event = fake.events[delivered]!;
      const { payload, header } = fake.signEvent(event);
      const ack = await processStripeWebhook({ db: db(), clock, practiceId, logger: silentLogger, cipher, secrets: SECRET }, Buffer.from(payload), header);
      outcomes.push(ack.outcome);
    }
    return outcomes;
  }

  const jobDeps = (): PlanJobDeps => ({
    db: db(), clock, logger: silentLogger, cipher, gatewayFor: async () => gateway,
    payLink: async ({ guarantorId }) => `https://pay.example-clinic.test/p/${guarantorId.slice(0, 8)}`,
  });

  /** Runs `plans.charge-due` as a real Agenda job and waits for it to finish. */
  async function runSweepJob(): Promise<void> {
    const registry = new JobRegistry();
    // A short lock lifetime: Agenda's liveness check sleeps half of it and would keep the test process alive.
    registry.register({ ...planInstallmentsJob(jobDeps()), lockLifetimeMs: 4_000 });
    const scheduler = new Scheduler({ db: db(), registry, name: `test-${randomUUID().slice(0, 6)}`, concurrency: 1, pollIntervalMs: 100 });
    const finished = new Promise<Error | undefined>((resolve) => scheduler.onOutcome((o) => resolve(o.error)));
    await scheduler.start();
    await scheduler.now(PLAN_JOBS.chargeDue, {});
    const error = await finished;
    await scheduler.stop(2_000);
    assert.equal(error, undefined);
  }

  /** A household whose guarantor chose the 3-month plan for $150.00 and paid installment 1 at Checkout. */
  async function activePlan(email?: string): Promise<{ h: Household; planId: string }> {
    clock.set(new Date('2026-03-02T15:00:00Z'));
    const h = await seedHousehold(db(), clock, `plan-${randomUUID().slice(0, 8)}`);
    if (email) await new LedgerRepository(db().pool, cipher, clock).upsertPatient(h.practiceId, { system: 'urn:mrn', value: `P-${(await practiceSlug(h.practiceId))}` }, { email });
    const offer = offeredPlans(15_000, { minimumInstallmentCents: 2_500, maximumMonths: 6 }).find((o) => o.months === 3)!;
    const { planId, firstInstallment } = await proposePlan({ db: db(), clock }, {
      practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [h.olderBalanceId, h.newerBalanceId], offer, timeZone: ZONE,
    });
    assert.deepEqual(firstInstallment, money(5_000, 'USD'));
    const payment = await new PaymentRepository(db().pool, clock).createPending({
      practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [h.olderBalanceId, h.newerBalanceId], amount: firstInstallment,
    });
    const session = await gateway.createCheckoutSession(checkoutSessionParams({
      paymentId: payment.id, guarantorId: h.guarantorId, amount: firstInstallment, plan: { planId },
      successUrl: 'http://127.0.0.1:3000/paid', cancelUrl: 'http://127.0.0.1:3000/cancel',
    }));
    fake.completeCheckoutSession(session.id);
    await deliverEvents(h.practiceId);
    return { h, planId };
  }

  async function practiceSlug(practiceId: string): Promise<string> {
    const { rows } = await db().pool.query<{ slug: string }>('SELECT slug FROM practices WHERE id = $1', [practiceId]);
    return rows[0]!.slug;
  }

  const plan = (h: Household, planId: string) => new PlanRepository(db().pool, clock).get(h.practiceId, planId);
  const balance = (id: string) => new LedgerRepository(db().pool, cipher, clock).getBalance(id);
  const owed = async (h: Household) => (await balance(h.olderBalanceId))!.patientAmount.amount + (await balance(h.newerBalanceId))!.patientAmount.amount;
  const chargeKeys = (planId: string) => fake.requests.filter((r) => r.path === '/v1/payment_intents' && r.idempotencyKey?.includes(planId)).map((r) => r.idempotencyKey);

  test('Checkout pays installment 1: the plan is active, the card saved, the balances in_plan, two installments scheduled', async () => {
    const { h, planId } = await activePlan();
    const p = (await plan(h, planId))!;
    assert.equal(p.status, 'active');
    assert.match(p.stripe.customer ?? '', /^cus_/);
    assert.match(p.stripe.paymentMethod ?? '', /^pm_/);
    assert.deepEqual(p.installments.map((i) => [i.number, i.dueDate, i.amountMinor, i.status]), [
      [1, '2026-03-02', 5_000, 'paid'], [2, '2026-04-02', 5_000, 'scheduled'], [3, '2026-05-02', 5_000, 'scheduled'],
    ]);
    assert.deepEqual(p.installments[1]!.nextAttemptAt, chargeInstant('2026-04-02', ZONE));
    assert.equal((await balance(h.olderBalanceId))!.status, 'in_plan');
    assert.equal(await owed(h), 10_000);
  });

  test('a declined installment is retried a day later and recovers; the ledger posts it once', async () => {
    const { h, planId } = await activePlan();
    clock.set(chargeInstant('2026-04-02', ZONE));
    fake.failNextPaymentIntents('card_declined');
    await runSweepJob();
    assert.deepEqual(await deliverEvents(h.practiceId), ['payment-failed']);
    let p = (await plan(h, planId))!;
    assert.deepEqual([p.installments[1]!.status, p.installments[1]!.attempts, p.installments[1]!.nextAttemptOn, p.installments[1]!.lastFailureCode], ['retrying', 1, '2026-04-03', 'card_declined']);
    await runSweepJob(); // nothing due yet: no charge
    clock.set(chargeInstant('2026-04-03', ZONE));
    await runSweepJob();
    assert.deepEqual(await deliverEvents(h.practiceId), ['payment-posted']);
    await runSweepJob(); // already paid: nothing more
    p = (await plan(h, planId))!;
    assert.deepEqual([p.installments[1]!.status, p.installments[1]!.attempts, p.status], ['paid', 2, 'active']);
    assert.deepEqual(chargeKeys(planId), [`settle-plan-${planId}-i2-a1`, `settle-plan-${planId}-i2-a2`]);
    assert.equal(await owed(h), 5_000);
  });

  test('two sweeps at once charge each due installment once', async () => {
    const { h, planId } = await activePlan();
    clock.set(chargeInstant('2026-04-02', ZONE));
    const [a, b] = await Promise.all([chargeDueInstallments(jobDeps()), chargeDueInstallments(jobDeps())]);
    assert.equal(a.claimed + b.claimed, 1);
    assert.deepEqual(chargeKeys(planId), [`settle-plan-${planId}-i2-a1`]);
    await deliverEvents(h.practiceId);
    assert.equal(await owed(h), 5_000);
  });

  test('authentication_required puts an on-session pay link in the outbox (no name, no detail)', async () => {
    const { h, planId } = await activePlan('pat@example.org');
    clock.set(chargeInstant('2026-04-02', ZONE));
    fake.failNextPaymentIntents('authentication_required');
    await runSweepJob();
    await deliverEvents(h.practiceId);
    const outbox = await new OutreachDeliveryStore(db().pool, cipher, clock).list(h.practiceId);
    assert.equal(outbox.length, 1);
    const message = outbox[0]!;
    assert.deepEqual([message.channel, message.recipient, message.template], ['email', 'pat@example.org', 'plan-authentication-required']);
    assert.match(message.body, /\$50\.00/);
    assert.match(message.body, /https:\/\/pay\.example-clinic\.test\/p\//);
    assert.match(message.body, /^Webhook Clinic: /);
    const p = (await plan(h, planId))!;
    assert.deepEqual([p.installments[1]!.status, p.installments[1]!.nextAttemptOn], ['retrying', '2026-04-03']);
  });

  test('after the last retry fails the plan defaults and the balances go back to open', async () => {
    const { h, planId } = await activePlan();
    fake.failNextPaymentIntents('card_declined', 4);
    for (const day of ['2026-04-02', '2026-04-03', '2026-04-05', '2026-04-09']) {
      clock.set(chargeInstant(day, ZONE));
      await runSweepJob();
    }
    await deliverEvents(h.practiceId);
    const p = (await plan(h, planId))!;
    assert.equal(p.status, 'defaulted');
    assert.deepEqual(p.installments.map((i) => i.status), ['paid', 'cancelled', 'cancelled']);
    assert.deepEqual(chargeKeys(planId), [1, 2, 3, 4].map((a) => `settle-plan-${planId}-i2-a${a}`));
    assert.equal((await balance(h.olderBalanceId))!.status, 'open');
    assert.equal((await balance(h.newerBalanceId))!.status, 'open');
    assert.equal(await owed(h), 10_000);
    clock.set(chargeInstant('2026-05-02', ZONE));
    await runSweepJob();
    assert.equal(chargeKeys(planId).length, 4, 'a defaulted plan charges nothing more');
  });

  test('paying off early charges exactly the remainder once, ends the plan and pays the balances', async () => {
    const { h, planId } = await activePlan();
    clock.set(new Date('2026-03-20T16:00:00Z'));
    const deps = { db: db(), clock, gateway, cipher };
    const result = await payOffPlan(deps, { practiceId: h.practiceId, planId });
    assert.equal(result.status, 'paid-off');
    assert.deepEqual(result.amount, money(10_000, 'USD'));
    const sent = fake.requests.filter((r) => r.idempotencyKey === `settle-plan-payoff-${result.paymentId}`);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.params.amount, 10_000);
    await assert.rejects(payOffPlan(deps, { practiceId: h.practiceId, planId }), /paid-off, not active/);
    assert.deepEqual(await deliverEvents(h.practiceId), ['payment-posted']);
    const p = (await plan(h, planId))!;
    assert.equal(p.status, 'paid-off');
    assert.deepEqual(p.installments.map((i) => i.status), ['paid', 'cancelled', 'cancelled']);
    assert.equal(await owed(h), 0);
    assert.equal((await balance(h.olderBalanceId))!.status, 'paid');
    clock.set(chargeInstant('2026-04-02', ZONE));
    await runSweepJob();
    assert.deepEqual(chargeKeys(planId), [], 'no installment is charged after a payoff');
  });

  test('in sandbox mode the same plan runs through the same webhook processing: checkout, then an installment', async () => {
    clock.set(new Date('2026-03-02T15:00:00Z'));
    const h = await seedHousehold(db(), clock, `plan-sbx-${randomUUID().slice(0, 8)}`);
    const sandbox = new SandboxGateway({ db: db(), clock, practiceId: h.practiceId, logger: silentLogger, baseUrl: 'http://127.0.0.1:3000' });
    const offer = offeredPlans(15_000, { minimumInstallmentCents: 2_500, maximumMonths: 6 }).find((o) => o.months === 3)!;
    const { planId, firstInstallment } = await proposePlan({ db: db(), clock }, {
      practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [h.olderBalanceId, h.newerBalanceId], offer, timeZone: ZONE,
    });
    const payment = await new PaymentRepository(db().pool, clock).createPending({
      practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [h.olderBalanceId, h.newerBalanceId], amount: firstInstallment,
    });
    const session = await sandbox.createCheckoutSession(checkoutSessionParams({
      paymentId: payment.id, guarantorId: h.guarantorId, amount: firstInstallment, plan: { planId },
      successUrl: 'http://127.0.0.1:3000/paid', cancelUrl: 'http://127.0.0.1:3000/cancel',
    }));
    await sandbox.completeSession(session.id);
    assert.equal((await plan(h, planId))!.status, 'active');
    clock.set(chargeInstant('2026-04-02', ZONE));
    const summary = await chargeDueInstallments({ ...jobDeps(), gatewayFor: async () => sandbox });
    assert.deepEqual([summary.claimed, summary.paid], [1, 1]);
    assert.equal((await plan(h, planId))!.installments[1]!.status, 'paid');
    assert.equal(await owed(h), 5_000);
  });

  test('in sandbox mode the installments of several plans due together are charged at once: their events handled in one webhook batch', async () => {
    clock.set(new Date('2026-03-02T15:00:00Z'));
    const h = await seedHousehold(db(), clock, `plan-round-${randomUUID().slice(0, 8)}`);
    const sandbox = new SandboxGateway({ db: db(), clock, practiceId: h.practiceId, logger: silentLogger, baseUrl: 'http://127.0.0.1:3000' });
    const ledger = new LedgerRepository(db().pool, cipher, clock);
    const offer = offeredPlans(15_000, { minimumInstallmentCents: 2_500, maximumMonths: 6 }).find((o) => o.months === 3)!;
    const planIds: string[] = [];
    for (let i = 0; i < 3; i++) {
      // A guarantor of the practice owing $150.00, who chose the 3-month plan and paid installment 1 at the sandbox Checkout.
      const key = `R-${randomUUID().slice(0, 8)}`;
      const patientId = await ledger.upsertPatient(h.practiceId, { system: 'urn:mrn', value: key });
      const guarantorId = await ledger.ensureGuarantor(h.practiceId, { selfPatientId: patientId });
      const accountId = await ledger.ensureAccount(h.practiceId, { identifier: { system: 'urn:acct', value: key }, patientId });
      const { balanceIds } = await ledger.postSource(h.practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: key, versionId: '1', lastUpdated: null },
        { accountId, guarantorId, patientId }, [{ lineKey: 'l0', kind: 'charge', amount: money(15_000, 'USD'), serviceDate: '2026-01-05', payer: 'patient', serviceCode: null, description: null }]);
      const { planId, firstInstallment } = await proposePlan({ db: db(), clock }, { practiceId: h.practiceId, guarantorId, balanceIds, offer, timeZone: ZONE });
      const payment = await new PaymentRepository(db().pool, clock).createPending({ practiceId: h.practiceId, guarantorId, balanceIds, amount: firstInstallment });
      const session = await sandbox.createCheckoutSession(checkoutSessionParams({
        paymentId: payment.id, guarantorId, amount: firstInstallment, plan: { planId }, successUrl: 'http://127.0.0.1:3000/paid', cancelUrl: 'http://127.0.0.1:3000/cancel',
      }));
      await sandbox.completeSession(session.id);
      planIds.push(planId);
    }
    clock.set(chargeInstant('2026-04-02', ZONE));
    const queries = mock.method(pg.Client.prototype, 'query');
    let claims: number;
    let summary;
    try {
      summary = await chargeDueInstallments({ ...jobDeps(), gatewayFor: async () => sandbox });
    } finally {
      claims = queries.mock.calls.filter((c) => String(typeof c.arguments[0] === 'string' ? c.arguments[0] : (c.arguments[0] as { text?: string }).text).trimStart().startsWith('WITH req AS')).length;
      queries.mock.restore();
    }
    assert.deepEqual([summary.claimed, summary.paid], [3, 3]);
    assert.equal(claims, 1, 'the three installments\' payment events were claimed and handled in one batch, not one transaction each');
    for (const planId of planIds) {
      const stored = (await new PlanRepository(db().pool, clock).get(h.practiceId, planId))!;
      assert.deepEqual([stored.status, stored.installments[1]!.status], ['active', 'paid']);
      const paid = await new PaymentRepository(db().pool, clock).get(h.practiceId, stored.installments[1]!.paymentId!);
      assert.equal(paid?.status, 'succeeded', 'each installment\'s payment posted once');
    }
  });

  test('in sandbox mode a plan paid at Checkout is handled in the batch of its checkout\'s events: the plan active with its card, its balances in plan', async () => {
    clock.set(new Date('2026-03-02T15:00:00Z'));
    const h = await seedHousehold(db(), clock, `plan-bat-${randomUUID().slice(0, 8)}`);
    const sandbox = new SandboxGateway({ db: db(), clock, practiceId: h.practiceId, logger: silentLogger, baseUrl: 'http://127.0.0.1:3000' });
    const offer = offeredPlans(15_000, { minimumInstallmentCents: 2_500, maximumMonths: 6 }).find((o) => o.months === 3)!;
    const balanceIds = [h.olderBalanceId, h.newerBalanceId];
    const { planId, firstInstallment } = await proposePlan({ db: db(), clock }, { practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds, offer, timeZone: ZONE });
    const payment = await new PaymentRepository(db().pool, clock).createPending({ practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds, amount: firstInstallment });
    const session = await sandbox.createCheckoutSession(checkoutSessionParams({
      paymentId: payment.id, guarantorId: h.guarantorId, amount: firstInstallment, plan: { planId },
      successUrl: 'http://127.0.0.1:3000/paid', cancelUrl: 'http://127.0.0.1:3000/cancel',
    }));
    const queries = mock.method(pg.Client.prototype, 'query');
    let transactions: number;
    try {
      assert.deepEqual((await sandbox.completeSessions([session.id])).map((ack) => ack.outcome), ['payment-posted', 'payment-already-posted']);
    } finally {
      transactions = queries.mock.calls.filter((c) => c.arguments[0] === 'BEGIN').length;
      queries.mock.restore();
    }
    assert.equal(transactions, 1, 'both events (checkout completed, payment succeeded) in one transaction, neither handled alone');
    const stored = (await plan(h, planId))!;
    assert.equal(stored.status, 'active');
    assert.equal(stored.firstPaymentId, payment.id);
    assert.ok(stored.stripe.customer && stored.stripe.paymentMethod, 'the saved card, from the payment event');
    assert.deepEqual(stored.installments.map((x) => x.status), ['paid', 'scheduled', 'scheduled']);
    assert.deepEqual([(await balance(h.olderBalanceId))!.status, (await balance(h.newerBalanceId))!.status], ['in_plan', 'in_plan']);
    assert.equal(await owed(h), 10_000);
  });

  test('a plan is stored, read and its state saved in one statement each (its installments with it)', async () => {
    const h = await seedHousehold(db(), clock, `plan-sql-${randomUUID().slice(0, 8)}`);
    const offer = offeredPlans(15_000, { minimumInstallmentCents: 2_500, maximumMonths: 6 }).find((o) => o.months === 3)!;
    const queries = mock.method(pg.Client.prototype, 'query');
    const sent = () => queries.mock.calls.map((c) => String(c.arguments[0]).trim().split(/\s+/)[0]).filter((word) => word !== 'BEGIN' && word !== 'COMMIT');
    try {
      const { planId } = await proposePlan({ db: db(), clock }, {
        practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [h.olderBalanceId, h.newerBalanceId], offer, timeZone: ZONE,
      });
      const repository = new PlanRepository(db().pool, clock);
      const created = (await repository.get(h.practiceId, planId))!;
      assert.deepEqual(created.installments.map((i) => [i.number, i.amountMinor, i.status]), [[1, 5_000, 'scheduled'], [2, 5_000, 'scheduled'], [3, 5_000, 'scheduled']]);
      queries.mock.resetCalls();
      const state = planState(created);
      await repository.saveState(created, { ...state, status: 'active', installments: state.installments.map((i) => (i.number === 1 ? { ...i, status: 'paid', attempts: 1 } : i)) }, { customer: 'cus_sql' });
      assert.deepEqual(sent(), ['WITH'], 'the plan and its installments in one statement');
      queries.mock.resetCalls();
      const saved = (await repository.get(h.practiceId, planId))!;
      assert.deepEqual(sent(), ['SELECT'], 'the plan and its installments in one statement');
      assert.deepEqual([saved.status, saved.stripe.customer], ['active', 'cus_sql']);
      assert.ok(saved.activatedAt);
      assert.deepEqual(saved.installments.map((i) => [i.number, i.status, i.attempts, i.paidAt !== null]), [[1, 'paid', 1, true], [2, 'scheduled', 0, false], [3, 'scheduled', 0, false]]);
    } finally {
      queries.mock.restore();
    }
  });

  test('a plan whose offer no longer matches the balances is refused with a clear reason', async () => {
    const h = await seedHousehold(db(), clock, `stale-${randomUUID().slice(0, 8)}`);
    const offer = offeredPlans(20_000, { minimumInstallmentCents: 2_500, maximumMonths: 6 })[0]!;
    await assert.rejects(
      proposePlan({ db: db(), clock }, { practiceId: h.practiceId, guarantorId: h.guarantorId, balanceIds: [h.olderBalanceId, h.newerBalanceId], offer, timeZone: ZONE }),
      (error: unknown) => error instanceof PlanProposalError && error.code === 'offer-mismatch' && /15000/.test(error.message),
    );
    await assert.rejects(
      proposePlan({ db: db(), clock }, { practiceId: h.practiceId, guarantorId: randomUUID(), balanceIds: [h.olderBalanceId], offer, timeZone: ZONE }),
      (error: unknown) => error instanceof PlanProposalError && error.code === 'unknown-balance',
    );
  });
}, { skip: stripeSpecMissing() });
