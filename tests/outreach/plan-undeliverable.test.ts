/**
 * Planning knows the addresses delivery found undeliverable: a number a carrier refused (Twilio 30006) is not
 * texted again by the next step; the step's other channels go, and the timeline says why the text did not.
 */
import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { OutreachDeliveryStore } from '../../src/store/outreach-delivery.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { attemptsOf, cipher, createPerson, createPractice, DAY0_10H, outboxOf, plan, type Person } from './twilio-fixtures.ts';

describeOnEachDatabase('planning skips a channel whose address is known undeliverable', (db) => {
  const clock = new ManualClock(DAY0_10H);
  let practiceId = '';
  let landline: Person;
  let mobile: Person;

  before(async () => {
    practiceId = await createPractice(db(), 'undeliverable-plan');
    landline = await createPerson(db(), clock, practiceId, 'U1', { name: { given: ['Ann'] }, phones: ['(312) 555-0100'], email: 'ann@example.com' });
    mobile = await createPerson(db(), clock, practiceId, 'U2', { name: { given: ['Bea'] }, phones: ['(312) 555-0101'], email: 'bea@example.com' });
    // Delivery remembered the landline (written differently from the contact: the blind index matches anyway).
    await new OutreachDeliveryStore(db().pool, cipher, clock).markUndeliverable(practiceId, 'sms', '+1 312 555 0100', '30006');
  });

  it('the day-0 text to the undeliverable number is suppressed with rule and reason; the email goes', async () => {
    const planned = await plan(db(), clock, practiceId);
    const suppressed = planned.suppressed.filter((s) => s.balanceId === landline.balanceId);
    assert.deepEqual(suppressed.map((s) => [s.channel, s.rule]), [['sms', 'undeliverable']]);
    assert.doesNotMatch(suppressed[0]!.reason, /555|Ann/, 'no number or name in the reason');
    assert.deepEqual(planned.sent.filter((s) => s.balanceId === landline.balanceId).map((s) => s.channel), ['email']);
    assert.deepEqual((await outboxOf(db(), landline.balanceId)).map((r) => r.channel), ['email']);
    // The timeline shows why: the text's attempt is suppressed with the rule and reason.
    const attempts = await attemptsOf(db(), landline.balanceId);
    const text = attempts.find((a) => a.channel === 'sms')!;
    assert.equal(text.status, 'suppressed');
    assert.equal(text.rule, 'undeliverable');
    assert.match(text.reason ?? '', /mobile number on file was refused as undeliverable/);
    // Another guarantor's number is not affected.
    assert.deepEqual(planned.sent.filter((s) => s.balanceId === mobile.balanceId).map((s) => s.channel).sort(), ['email', 'sms']);
  });
});
