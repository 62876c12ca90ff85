/**
 * Write-back delivery to a real FHIR server (the sandbox EHR over HTTP): payments and refunds posted by the real
 * webhook handler reach the EHR once each, through a 503 spell, refused connections, and answers lost after the
 * write; dead-lettering opens a staff task.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { PaymentReconciliation } from '@medplum/fhirtypes';
import { ManualClock } from '../../src/domain/clock.ts';
import { WRITEBACK_DELIVER_JOB, WritebackDelivery, writebackDeliverJob } from '../../src/writeback/delivery.ts';
import { WritebackConfigError } from '../../src/writeback/target.ts';
import { startSandboxEhr, type SandboxEhr } from '../../src/sandbox-ehr/server.ts';
import { PaymentRepository } from '../../src/store/payments.ts';
import { StaffTaskRepository } from '../../src/store/staff-tasks.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { deliveryDeps, fhirConnector, paidPayment, refund, repoMappings, seedHousehold } from './fixtures.ts';

const MINUTE = 60_000;

async function reconciliations(ehr: SandboxEhr): Promise<PaymentReconciliation[]> {
  return (await ehr.repo.searchResources<PaymentReconciliation>({ resourceType: 'PaymentReconciliation', count: 100_000 })) as PaymentReconciliation[];
}

describeOnEachDatabase('write-back delivery to a FHIR EHR', (db) => {
  const clock = new ManualClock(new Date('2026-06-01T15:00:00Z'));
  let n = 0;
  const slug = () => `wb-fhir-${++n}`;
  const noWait = { sleep: async () => {} };

  it('a payment and its refund become two PaymentReconciliations in the EHR, with the balances they paid; delivering again sends nothing', async () => {
    const ehr = await startSandboxEhr();
    try {
      const practice = slug();
      const h = await seedHousehold(db(), clock, practice);
      const payment = await paidPayment(db(), clock, h, 12_000);
      await refund(db(), clock, h, payment, 1_000);
      const delivery = new WritebackDelivery(deliveryDeps(db(), clock, [fhirConnector(practice, ehr.baseUrl)], { fhir: noWait }));
      const report = await delivery.deliverDue();
      assert.deepEqual({ delivered: report.delivered, failed: report.failed, dead: report.dead }, { delivered: 2, failed: 0, dead: 0 });

      const written = await reconciliations(ehr);
      const byId = new Map(written.map((r) => [r.identifier?.[0]?.value, r]));
      const paid = byId.get(`payment-${payment.id}`)!;
      assert.deepEqual(paid.paymentAmount, { value: 120, currency: 'USD' });
      assert.deepEqual(paid.detail?.map((d) => [d.request?.reference, d.amount?.value]).sort(), [[`Invoice/${practice}-A`, 100], [`Invoice/${practice}-B`, 20]]);
      assert.deepEqual(byId.get(`refund-${payment.id}-1000`)?.paymentAmount, { value: -10, currency: 'USD' });

      const rows = await new PaymentRepository(db().pool, clock).writebacks(h.practiceId, payment.id);
      assert.deepEqual(rows.map((r) => [r.kind, r.status, r.attempts, r.target]), [['payment', 'delivered', 1, 'ehr'], ['refund', 'delivered', 1, 'ehr']]);
      assert.match(rows[0]!.deliveredRef ?? '', /^PaymentReconciliation\/[^/]+$/);

      assert.equal((await delivery.deliverDue()).claimed, 0);
      assert.equal((await reconciliations(ehr)).length, 2);
      const audited = await db().pool.query<{ action: string; entity_id: string }>(
        "SELECT action, entity_id FROM audit_events WHERE practice_id = $1 AND entity_type = 'writeback' ORDER BY entity_id", [h.practiceId]);
      assert.deepEqual(audited.rows, [
        { action: 'writeback.delivered', entity_id: `payment-${payment.id}` },
        { action: 'writeback.delivered', entity_id: `refund-${payment.id}-1000` },
      ], 'each delivered write-back is audited once');
    } finally {
      await ehr.close();
    }
  });

  it('the EHR answers 503, then refuses connections, then loses answers after writing: every write-back lands exactly once after recovery', async () => {
    let ehr = await startSandboxEhr();
    const port = Number(new URL(ehr.baseUrl).port);
    const repo = ehr.repo;
    try {
      const practice = slug();
      const h = await seedHousehold(db(), clock, practice);
      const payments = [];
      for (let i = 0; i < 4; i++) payments.push(await paidPayment(db(), clock, h, 1_000 + i));
      await refund(db(), clock, h, payments[0]!, 500);
      const delivery = new WritebackDelivery(deliveryDeps(db(), clock, [fhirConnector(practice, ehr.baseUrl)], { fhir: noWait }));
      const payments$ = new PaymentRepository(db().pool, clock);

      ehr.failNext(503, 1_000);
      const during503 = await delivery.deliverDue();
      assert.deepEqual([during503.delivered, during503.failed, during503.deferred], [0, 1, 4], 'one tried, the rest given back untried');

      await ehr.close(); // connection refused from now on
      clock.advance(2 * MINUTE);
      const whileDown = await delivery.deliverDue();
      assert.deepEqual([whileDown.delivered, whileDown.failed], [0, 1]);
      clock.advance(5 * MINUTE);
      assert.equal((await delivery.deliverDue()).delivered, 0);
      const failed = await payments$.listWritebacks(h.practiceId, { status: 'failed' });
      assert.ok(failed.length >= 1 && failed.every((r) => r.lastError?.includes('no response from the FHIR server') || r.lastError?.includes('503')), JSON.stringify(failed.map((r) => r.lastError)));

      ehr = await startSandboxEhr({ port, repo }); // back, same data, same address
      ehr.dropAnswers(2); // the next write happens, but its answer and the client's retry's answer are lost
      clock.advance(60 * MINUTE);
      const lostAnswer = await delivery.deliverDue();
      assert.deepEqual([lostAnswer.delivered, lostAnswer.failed], [0, 1]);
      assert.equal((await reconciliations(ehr)).length, 1, 'the EHR has it, Settle does not know yet');
      clock.advance(60 * MINUTE);
      const recovered = await delivery.deliverDue();
      assert.equal(recovered.delivered, 5, JSON.stringify(recovered));

      const written = await reconciliations(ehr);
      const ids = written.map((r) => r.identifier?.[0]?.value).sort();
      assert.deepEqual(ids, [...payments.map((p) => `payment-${p.id}`), `refund-${payments[0]!.id}-500`].sort(), 'each write-back exactly once');
      const all = await payments$.listWritebacks(h.practiceId);
      assert.ok(all.every((r) => r.status === 'delivered'));
      assert.ok(Math.max(...all.map((r) => r.attempts)) >= 3, 'the first one was tried through the outage');
    } finally {
      await ehr.close().catch(() => {});
    }
  });

  it('after maxAttempts failures a write-back is dead-lettered and a writeback-failed staff task opened; it is not tried again', async () => {
    const ehr = await startSandboxEhr();
    try {
      const practice = slug();
      const h = await seedHousehold(db(), clock, practice);
      const payment = await paidPayment(db(), clock, h, 3_000);
      const delivery = new WritebackDelivery(deliveryDeps(db(), clock, [fhirConnector(practice, ehr.baseUrl, { maxAttempts: 3 })], { fhir: noWait }));
      ehr.failNext(503, 1_000);
      const outcomes = [];
      for (let i = 0; i < 4; i++) {
        const r = await delivery.deliverDue();
        outcomes.push([r.failed, r.dead]);
        clock.advance(30 * MINUTE);
      }
      assert.deepEqual(outcomes, [[1, 0], [1, 0], [0, 1], [0, 0]]);
      const [row] = await new PaymentRepository(db().pool, clock).writebacks(h.practiceId, payment.id);
      assert.equal(row?.status, 'dead');
      assert.equal(row?.attempts, 3);
      const tasks = await new StaffTaskRepository(db().pool, clock).list(h.practiceId, { kind: 'writeback-failed' });
      assert.equal(tasks.length, 1);
      assert.equal(tasks[0]?.subjectRef, `writeback:payment-${payment.id}`);
      assert.match(tasks[0]?.note ?? '', /gave up after 3 attempt/);
      const audited = await db().pool.query<{ action: string }>("SELECT action FROM audit_events WHERE practice_id = $1 AND entity_type = 'writeback'", [h.practiceId]);
      assert.deepEqual(audited.rows.map((r) => r.action), ['writeback.dead']);
      assert.equal((await reconciliations(ehr)).length, 0);
    } finally {
      await ehr.close();
    }
  });

  it('backoff grows between attempts: the next attempt is later after each failure', async () => {
    const ehr = await startSandboxEhr();
    try {
      const practice = slug();
      const h = await seedHousehold(db(), clock, practice);
      const payment = await paidPayment(db(), clock, h, 2_000);
      const delivery = new WritebackDelivery(deliveryDeps(db(), clock, [fhirConnector(practice, ehr.baseUrl)], { fhir: noWait }));
      ehr.failNext(503, 1_000);
      const waits: number[] = [];
      for (let i = 0; i < 3; i++) {
        await delivery.deliverDue();
        const [row] = await new PaymentRepository(db().pool, clock).writebacks(h.practiceId, payment.id);
        waits.push(row!.nextAttemptAt.getTime() - clock.now().getTime());
        clock.advance(row!.nextAttemptAt.getTime() - clock.now().getTime());
      }
      // initial 30 s, doubling, random 0.5 → three quarters of each step.
      assert.deepEqual(waits, [22_500, 45_000, 90_000]);
    } finally {
      await ehr.close();
    }
  });

  it('the writeback.deliver job delivers what is due', async () => {
    const ehr = await startSandboxEhr();
    try {
      const practice = slug();
      const h = await seedHousehold(db(), clock, practice);
      const payment = await paidPayment(db(), clock, h, 7_700);
      const job = writebackDeliverJob(deliveryDeps(db(), clock, [fhirConnector(practice, ehr.baseUrl)], { fhir: noWait }));
      assert.equal(job.name, WRITEBACK_DELIVER_JOB);
      await job.run({}, { jobId: 'test', failures: 0 });
      const [row] = await new PaymentRepository(db().pool, clock).writebacks(h.practiceId, payment.id);
      assert.equal(row?.status, 'delivered');
      assert.deepEqual((await reconciliations(ehr)).map((r) => r.paymentAmount), [{ value: 77, currency: 'USD' }]);
    } finally {
      await ehr.close();
    }
  });

  it('two connectors of one practice with write-back enabled is a configuration error naming both files', () => {
    assert.throws(
      () => new WritebackDelivery(deliveryDeps(db(), clock, [fhirConnector('p1', 'http://127.0.0.1:1/fhir', {}, 'ehr-a'), fhirConnector('p1', 'http://127.0.0.1:1/fhir', {}, 'ehr-b')])),
      (e: Error) => e instanceof WritebackConfigError && /connectors\/ehr-a\.json and connectors\/ehr-b\.json/.test(e.message),
    );
    assert.throws(
      () => new WritebackDelivery(deliveryDeps(db(), clock, [fhirConnector('p1', 'http://127.0.0.1:1/fhir', { renderer: 'vendor-mapping', mapping: 'no-such-mapping' })])),
      /\/writeBack\/mapping names no mapping/,
    );
    assert.ok(repoMappings.get('oracle-health-writeback-basic'), 'the Oracle preset is loaded');
  });
});
