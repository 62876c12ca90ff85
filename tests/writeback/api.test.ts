/**
 * Write-backs through the staff API over real HTTP: state per payment, the dead-letter list, replay (audited,
 * staff only), and the Prometheus count; the replayed write-back then reaches the EHR.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { WritebackDelivery } from '../../src/writeback/delivery.ts';
import { startSandboxEhr } from '../../src/sandbox-ehr/server.ts';
import { startTestApi } from '../support/api.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { deliveryDeps, fhirConnector, paidPayment, seedHousehold } from './fixtures.ts';

describeOnEachDatabase('write-backs in the API', (db) => {
  const clock = new ManualClock(new Date('2026-06-01T15:00:00Z'));

  it('a dead-lettered write-back is listed, replayed by staff, then delivered; its state shows per payment', async () => {
    const ehr = await startSandboxEhr();
    const h = await seedHousehold(db(), clock, 'wb-api');
    const api = await startTestApi(db(), { slug: 'wb-api' });
    try {
      const payment = await paidPayment(db(), clock, h, 4_200);
      const delivery = new WritebackDelivery(deliveryDeps(db(), clock, [fhirConnector('wb-api', ehr.baseUrl, { maxAttempts: 1 })], { fhir: { sleep: async () => {} } }));
      ehr.failNext(503, 2);
      assert.equal((await delivery.deliverDue()).dead, 1);

      const call = async (method: string, path: string, key = api.keys.staff) => {
        const res = await fetch(`${api.url}${path}`, { method, headers: { authorization: `Bearer ${key}` } });
        const text = await res.text();
        return { status: res.status, body: res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text };
      };
      const perPayment = await call('GET', `/payments/${payment.id}/writebacks`);
      assert.equal(perPayment.status, 200);
      assert.deepEqual(perPayment.body.writebacks.map((w: { writebackId: string; status: string; attempts: number }) => [w.writebackId, w.status, w.attempts]), [[`payment-${payment.id}`, 'dead', 1]]);
      assert.match(perPayment.body.writebacks[0].lastError, /503/);
      assert.match(perPayment.body.writebacks[0].controlId, /^[0-9A-F]{16}$/, 'the HL7 MSH-10 it is sent with, shown to staff');

      const dead = await call('GET', '/writebacks?status=dead');
      assert.equal(dead.body.counts.dead, 1);
      assert.equal(dead.body.writebacks.length, 1);
      const id = dead.body.writebacks[0].id;

      assert.equal((await call('POST', `/writebacks/${id}/replay`, api.keys.integration)).status, 403, 'replay is a staff action');
      const replayed = await call('POST', `/writebacks/payment-${payment.id}/replay`);
      assert.equal(replayed.status, 200);
      assert.deepEqual([replayed.body.replayed, replayed.body.writeback.status, replayed.body.writeback.attempts], [true, 'pending', 0]);
      const again = await call('POST', `/writebacks/${id}/replay`);
      assert.deepEqual([again.status, again.body.code], [409, 'writeback_not_replayable']);
      assert.equal((await call('GET', '/writebacks/no-such-writeback')).status, 404);
      assert.equal((await call('GET', '/payments/00000000-0000-4000-8000-000000000000/writebacks')).status, 404);

      assert.equal((await delivery.deliverDue()).delivered, 1);
      const after = await call('GET', `/payments/${payment.id}/writebacks`);
      assert.equal(after.body.writebacks[0].status, 'delivered');
      assert.match(after.body.writebacks[0].deliveredRef, /^PaymentReconciliation\//);
      const metrics = await call('GET', '/metrics', api.keys.integration);
      assert.match(metrics.body, /settle_writebacks\{status="delivered"\} 1/);
      const { rows } = await db().pool.query("SELECT count(*)::int AS n FROM audit_events WHERE action = 'writeback.replay' AND entity_id = $1", [id]);
      assert.equal(rows[0].n, 1);
    } finally {
      await api.close();
      await ehr.close();
    }
  });
});
