/**
 * DFT^P03 write-backs to a real MLLP peer on a loopback socket: done only on AA; AE is a failure with the peer's
 * reason, tried again later with the same MSH-10 (the write-back's stored control id, at most 20 characters, which
 * the peer's ACK echoes in MSA-2).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { Hl7Message } from '@medplum/core';
import { ManualClock } from '../../src/domain/clock.ts';
import { WritebackDelivery } from '../../src/writeback/delivery.ts';
import { hl7ControlId, PaymentRepository } from '../../src/store/payments.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { deliveryDeps, hl7Connector, paidPayment, seedHousehold, startMllpPeer } from './fixtures.ts';

const segment = (text: string, name: string) => text.split('\r').find((s) => s.startsWith(`${name}|`))!.split('|');

describeOnEachDatabase('write-back as HL7 DFT^P03 over MLLP', (db) => {
  const clock = new ManualClock(new Date('2026-06-01T15:00:00Z'));

  it('a payment over two accounts is acknowledged AA by the peer: one DFT^P03 per account, MSH-10 from the write-back\'s control id, FT1 PY with a negative amount', async () => {
    const peer = await startMllpPeer(() => 'AA');
    const h = await seedHousehold(db(), clock, 'wb-hl7-aa');
    const payment = await paidPayment(db(), clock, h, 12_000);
    const delivery = new WritebackDelivery(deliveryDeps(db(), clock, [hl7Connector('wb-hl7-aa', peer.port)]));
    try {
      const report = await delivery.deliverDue();
      assert.equal(report.delivered, 1);
      const [queued] = await new PaymentRepository(db().pool, clock).writebacks(h.practiceId, payment.id);
      assert.equal(queued?.controlId, hl7ControlId(h.practiceId, `payment-${payment.id}`));
      const controlIds = [`${queued!.controlId}-1`, `${queued!.controlId}-2`];
      assert.deepEqual(peer.received.map((m) => Hl7Message.parse(m).getSegment('MSH')?.getField(10)?.toString()), controlIds);
      for (const id of controlIds) assert.ok(id.length <= 20, `MSH-10 ${id} is ST of at most 20 characters`);
      for (const message of peer.received) {
        assert.equal(Hl7Message.parse(message).getSegment('MSH')?.getField(9)?.toString(), 'DFT^P03^DFT_P03');
        assert.equal(segment(message, 'FT1')[6], 'PY');
      }
      assert.deepEqual(peer.received.map((m) => segment(m, 'FT1')[11]).sort(), ['-100.00&USD', '-20.00&USD']);
      assert.deepEqual(peer.received.map((m) => segment(m, 'PID')[18]).sort(), ['wb-hl7-aa-A', 'wb-hl7-aa-B']);
      const [row] = await new PaymentRepository(db().pool, clock).writebacks(h.practiceId, payment.id);
      assert.equal(row?.status, 'delivered');
      assert.equal(row?.deliveredRef, controlIds.join(' '), 'each ACK matched its message by MSA-2');
    } finally {
      await delivery.close();
      await peer.close();
    }
  });

  it('AE from the peer fails the write-back with its reason; the retry resends the same MSH-10 and is done on AA', async () => {
    const peer = await startMllpPeer((n) => (n === 0 ? 'AE' : 'AA'));
    const h = await seedHousehold(db(), clock, 'wb-hl7-ae');
    const payment = await paidPayment(db(), clock, h, 5_000);
    const delivery = new WritebackDelivery(deliveryDeps(db(), clock, [hl7Connector('wb-hl7-ae', peer.port)]));
    const repo = new PaymentRepository(db().pool, clock);
    try {
      const first = await delivery.deliverDue();
      assert.deepEqual([first.delivered, first.failed], [0, 1]);
      const [failed] = await repo.writebacks(h.practiceId, payment.id);
      assert.equal(failed?.status, 'failed');
      assert.match(failed?.lastError ?? '', /AE/);
      assert.match(failed?.lastError ?? '', /Unknown account number/);

      assert.equal((await delivery.deliverDue()).claimed, 0, 'not before its backoff');
      clock.advance(failed!.nextAttemptAt.getTime() - clock.now().getTime());
      const second = await delivery.deliverDue();
      assert.equal(second.delivered, 1);
      const controlIds = peer.received.map((m) => segment(m, 'MSH')[9]);
      const [done] = await repo.writebacks(h.practiceId, payment.id);
      assert.deepEqual(controlIds, [done!.controlId, done!.controlId], 'the retry resends the same MSH-10');
      assert.ok(done!.controlId.length <= 20);
      assert.deepEqual([done?.status, done?.attempts, done?.lastError, done?.deliveredRef], ['delivered', 2, null, done!.controlId]);
    } finally {
      await delivery.close();
      await peer.close();
    }
  });

  it('migration 0020 derives the control id of rows queued before it exactly as hl7ControlId does', async () => {
    const h = await seedHousehold(db(), clock, 'wb-hl7-sql');
    const payment = await paidPayment(db(), clock, h, 1_000);
    const sql = readFileSync(new URL('../../src/store/migrations/0020_writeback_control_refund_key.sql', import.meta.url), 'utf8');
    const backfill = /SET control_id = (.+);/.exec(sql)![1]!;
    const { rows } = await db().pool.query<{ computed: string; stored: string }>(
      `SELECT ${backfill} AS computed, control_id AS stored FROM writeback_outbox WHERE practice_id = $1 AND payment_id = $2`, [h.practiceId, payment.id],
    );
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.computed, rows[0]!.stored);
  });
});
