import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePartAmount, payPageModel, type PayPageInput } from '../../src/payments/pay-page.ts';

const leaky = { serviceDate: '2026-01-14', amountCents: 30_000, description: 'Asthma follow-up', serviceCode: '99213', diagnosis: 'J45.909', provider: 'Dr. Pulmo' };
const input: PayPageInput = {
  locale: 'en',
  practice: { name: 'Riverside Pediatrics', phone: '+1 617 555 0100' },
  currency: 'USD',
  balances: [
    { balanceId: 'bal_1', openCents: 18_250, lines: [leaky, { serviceDate: '2025-12-02', amountCents: 5_000 }] },
    { balanceId: 'bal_2', openCents: 30_000, lines: [{ serviceDate: '2026-02-01', amountCents: 30_000 }] },
  ],
  planTerms: { minimumInstallmentCents: 2_500, maximumMonths: 12 },
  sandbox: true,
};

describe('pay page model', () => {
  it('shows the amount due and statement lines as dates and "medical services" only', () => {
    const model = payPageModel(input);
    assert.equal(model.amountDueCents, 48_250);
    assert.equal(model.amountDue, '$482.50');
    assert.deepEqual(model.lines.map((l) => [l.date, l.label, l.amount]), [
      ['Dec 2, 2025', 'Medical services', '$50.00'],
      ['Jan 14, 2026', 'Medical services', '$300.00'],
      ['Feb 1, 2026', 'Medical services', '$300.00'],
    ]);
    const json = JSON.stringify(model);
    for (const phi of ['Asthma', '99213', 'J45', 'Pulmo']) assert.ok(!json.includes(phi), `leaked ${phi}`);
    assert.equal(model.sandbox, true);
    assert.equal(model.practice.phone, '+1 617 555 0100');
  });

  it('offers full, part and the plans the terms allow', () => {
    const model = payPageModel(input);
    assert.equal(model.choices.payInFull, true);
    assert.deepEqual(model.choices.payPart, { minCents: 500, maxCents: 48_249 });
    assert.deepEqual(model.choices.plans.map((p) => p.months), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert.equal(model.choices.plans[4]!.text, '6 monthly payments: $80.45 today, then 5 × $80.41');
    assert.equal(model.choices.plans[0]!.text, '2 monthly payments of $241.25');
  });

  it('speaks Spanish', () => {
    const model = payPageModel({ ...input, locale: 'es' });
    assert.equal(model.lang, 'es');
    assert.equal(model.lines[0]!.label, 'Servicios médicos');
    assert.match(model.lines[0]!.date, /dic/);
    assert.equal(model.amountDue, '$482.50');
    assert.match(model.choices.plans[4]!.text, /^6 pagos mensuales: \$80\.45 hoy, luego 5 × \$80\.41$/);
    assert.match(model.text.sandbox, /prueba/);
  });

  it('offers no payment while on hold or in a plan', () => {
    const held = payPageModel({ ...input, state: 'on-hold' });
    assert.equal(held.choices.payInFull, false);
    assert.equal(held.choices.payPart, null);
    assert.deepEqual(held.choices.plans, []);
    assert.equal(held.choices.dispute, false);
    const planned = payPageModel({ ...input, state: 'in-plan' });
    assert.equal(planned.choices.plans.length, 0);
    assert.equal(planned.choices.financialAssistance, true);
  });

  it('reads a partial amount exactly and checks its bounds', () => {
    const model = payPageModel(input);
    assert.deepEqual(parsePartAmount('25', model), { ok: true, cents: 2_500 });
    assert.deepEqual(parsePartAmount('$ 25.5', model), { ok: true, cents: 2_550 });
    assert.deepEqual(parsePartAmount('$1.10', model), { ok: false, error: 'below-minimum' });
    assert.deepEqual(parsePartAmount('482.50', model), { ok: false, error: 'above-amount-due' });
    assert.deepEqual(parsePartAmount('1,000.00', model), { ok: false, error: 'above-amount-due' });
    assert.deepEqual(parsePartAmount('100,00', model), { ok: false, error: 'not-an-amount' });
    assert.deepEqual(parsePartAmount('10.005', model), { ok: false, error: 'not-an-amount' });
    assert.deepEqual(parsePartAmount('-5', model), { ok: false, error: 'not-an-amount' });
    assert.deepEqual(parsePartAmount('1e3', model), { ok: false, error: 'not-an-amount' });
    assert.deepEqual(parsePartAmount('20', payPageModel({ ...input, state: 'on-hold' })), { ok: false, error: 'not-offered' });
  });
});
