/**
 * DFT^P03 write-backs to a real MLLP peer on a loopback socket: done only on AA; AE is a failure with the peer's
 * reason, tried again later with the same MSH-10.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Hl7Message } from '@medplum/core';
import { ManualClock } from '../../src/domain/clock.ts';
import { WritebackDelivery } from '../../src/payments/writeback-delivery.ts';
import { PaymentRepository } from '../../src/store/payments.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { deliveryDeps, hl7Connector, paidPayment, seedHousehold, startMllpPeer } from './writeback-fixtures.ts';

const segment = (text: string, name: string) => text.split('\r').find((s) => s.startsWith(`${name}|`))!.split('|');

describeOnEachDatabase('write-back as HL7 DFT^P03 over MLLP', (db) => {
  const clock = new ManualClock(new Date('2026-06-01T15:00:00Z'));

  it('a payment over two accounts is acknowledged AA by the peer: one DFT^P03 per account, MSH-10 from the write-back id, FT1 PY with a negative amount', async () => {
    const peer = await startMllpPeer(() => 'AA');
    const h = await seedHousehold(db(), clock, 'wb-hl7-aa');
    const payment = await paidPayment(db(), clock, h, 12_000);
    const delivery = new WritebackDelivery(deliveryDeps(db(), clock, [hl7Connector('wb-hl7-aa', peer.port)]));
    try {
      const report = await delivery.deliverDue();
      assert.equal(report.delivered, 1);
      assert.deepEqual(peer.received.map((m) => Hl7Message.parse(m).getSegment('MSH')?.getField(10)?.toString()), [`payment-${payment.id}-1`, `payment-${payment.id}-2`]);
      for (const message of peer.received) {
        assert.equal(Hl7Message.parse(message).getSegment('MSH')?.getField(9)?.toString(), 'DFT^P03^DFT_P03');
        assert.equal(segment(message, 'FT1')[6], 'PY');
      }
      assert.deepEqual(peer.received.map((m) => segment(m, 'FT1')[11]).sort(), ['-100.00&USD', '-20.00&USD']);
      assert.deepEqual(peer.received.map((m) => segment(m, 'PID')[18]).sort(), ['wb-hl7-aa-A', 'wb-hl7-aa-B']);
      const [row] = await new PaymentRepository(db().pool, clock).writebacks(h.practiceId, payment.id);
      assert.equal(row?.status, 'delivered');
      assert.equal(row?.deliveredRef, `payment-${payment.id}-1 payment-${payment.id}-2`);
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
      assert.deepEqual(controlIds, [`payment-${payment.id}`, `payment-${payment.id}`]);
      const [done] = await repo.writebacks(h.practiceId, payment.id);
      assert.deepEqual([done?.status, done?.attempts, done?.lastError], ['delivered', 2, null]);
    } finally {
      await delivery.close();
      await peer.close();
    }
  });
});
