/**
 * The printed statement, read back with poppler's `pdftotext`, `pdfinfo` and `pdfimages`.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, before, it } from 'node:test';
import { ManualClock } from '../../src/domain/clock.ts';
import { accountReference, loadStatementInput, renderStatementPdf, renderStatementsPdf, type StatementInput } from '../../src/outreach/letter.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import QRCode from 'qrcode';
import { line, pdfFirstImage, pdfImages, pdfPages, pdfText, popplerMissing, seedBalance } from './letter-fixtures.ts';

const PAY_URL = 'https://pay.riverside.example/p/7Hq2xK9mQ3vT8wYz1aB4cD6eF0gH2jK5';

const statement = (overrides: Partial<StatementInput> = {}): StatementInput => ({
  language: 'en',
  practice: { name: 'Riverside Family Medicine', phone: '(555) 010-0199', address: ['12 River Rd', 'Springfield, IL 62701'] },
  statementDate: '2026-11-18',
  recipient: { firstName: 'Maria', addressLines: ['1 Elm St Apt 2', 'Springfield, IL 62704'] },
  accountReference: 'A1B2C3D4',
  amountDue: { amount: 123456, currency: 'USD' },
  aging: { current: 10000, days31to60: 20000, days61to90: 0, over90: 93456 },
  lines: [
    { date: '2026-06-01', kind: 'charge', amountCents: 150000 },
    { date: '2026-07-15', kind: 'payment', amountCents: -26544 },
  ],
  payUrl: PAY_URL,
  ...overrides,
});

describe('the printed statement', { skip: popplerMissing }, () => {
  it('shows the letterhead, statement date, amount due, aging, "Medical services" lines, the pay URL and a remittance stub', async () => {
    const pdf = await renderStatementPdf(statement());
    assert.equal(pdfPages(pdf), 1);
    const text = pdfText(pdf);
    for (const expected of [
      'Riverside Family Medicine', '(555) 010-0199', '12 River Rd', 'Statement date', 'Nov 18, 2026', 'Amount due', '$1,234.56',
      'Current', '31–60 days', 'Over 90 days', '$934.56', 'Jun 1, 2026', 'Medical services', 'Payment', '-$265.44', PAY_URL,
      'Please detach and return this portion with your payment', 'Account reference', 'A1B2C3D4', 'Amount enclosed', 'Make checks payable to',
    ]) assert.ok(text.includes(expected), `the statement shows "${expected}"`);
    assert.match(text, /Maria\s*\n\s*1 Elm St Apt 2\s*\n\s*Springfield, IL 62704/, 'the window-envelope address block');
  });

  it('carries the pay URL as a QR code image, module for module', async () => {
    const pdf = await renderStatementPdf(statement());
    assert.equal(pdfImages(pdf).filter((i) => i.type === 'image').length, 1, 'one image: the QR code');
    const image = pdfFirstImage(pdf);
    assert.ok(image, 'the image can be extracted');
    const { modules } = QRCode.create(PAY_URL, { errorCorrectionLevel: 'M' });
    const px = image.width / (modules.size + 4);
    assert.equal(image.width, image.height, 'square');
    assert.ok(Number.isInteger(px) && px >= 3, `whole pixels per module (${px})`);
    let differing = 0;
    for (let y = 0; y < modules.size; y++) {
      for (let x = 0; x < modules.size; x++) {
        const dark = image.pixel(Math.floor((x + 2.5) * px), Math.floor((y + 2.5) * px)) < 128;
        if (dark !== Boolean(modules.get(y, x))) differing++;
      }
    }
    assert.equal(differing, 0, 'every module matches the QR code of the pay URL');
    assert.ok(image.pixel(0, 0) > 128 && image.pixel(image.width - 1, image.height - 1) > 128, 'a white quiet zone');
  });

  it('is printed in Spanish for Spanish-speaking patients', async () => {
    const text = pdfText(await renderStatementPdf(statement({
      language: 'es', message: { heading: 'Estado de cuenta', body: 'Estimado/a María:\n\nAdjuntamos su estado de cuenta.' },
    })));
    for (const expected of ['Estado de cuenta', 'Fecha del estado de cuenta', '18 nov 2026', 'Saldo a pagar', '$1,234.56', 'Servicios médicos', 'Pago', 'Al día', 'Más de 90 días', 'Pague en línea', PAY_URL, 'Separe y devuelva esta parte con su pago', 'Estimado/a María:']) {
      assert.ok(text.includes(expected), `the Spanish statement shows "${expected}"`);
    }
    assert.doesNotMatch(text, /Medical services|Amount due/);
  });

  it('refuses bad input, naming the field', async () => {
    await assert.rejects(renderStatementPdf(statement({ payUrl: 'javascript:alert(1)' })), /payUrl must be an absolute http\(s\) URL/);
    await assert.rejects(renderStatementPdf(statement({ statementDate: '18/11/2026' })), /statementDate "18\/11\/2026"/);
    await assert.rejects(renderStatementsPdf([statement(), statement({ lines: [{ date: '2026-06-01', kind: 'charge', amountCents: 1.5 }] })]), /statement 2: lines\[0\]\.amountCents/);
    await assert.rejects(renderStatementsPdf([]), /at least one statement/);
  });

  it('folds older lines into "Earlier activity" so the page never overflows', async () => {
    const lines = Array.from({ length: 30 }, (_, i) => ({ date: `2026-0${1 + Math.floor(i / 10)}-${String(1 + (i % 10)).padStart(2, '0')}`, kind: 'charge' as const, amountCents: 1000 }));
    const pdf = await renderStatementPdf(statement({ lines }));
    assert.equal(pdfPages(pdf), 1);
    const text = pdfText(pdf);
    assert.match(text, /Earlier activity/);
    assert.ok(text.includes('Mar 10, 2026'), 'the newest line is shown');
  });
});

describeOnEachDatabase('a statement from the ledger', (db) => {
  const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
  const clock = new ManualClock(new Date('2026-06-15T15:00:00Z'));
  let practiceId = '';
  let balanceId = '';

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'letter-test', name: 'Riverside Family Medicine', timeZone: 'America/Chicago', phone: '(555) 010-0199' })).id;
    balanceId = await seedBalance(db(), cipher, clock, practiceId, 'L1', {
      name: { given: ['Maria'], family: 'Gonzalez' }, language: 'es-MX',
      address: { lines: ['1 Elm St'], city: 'Springfield', state: 'IL', postalCode: '62704' },
    }, [
      line('c1', 'charge', '200.00', '2026-02-01', { serviceCode: '99213', description: 'Office visit: Type 2 diabetes follow-up' }),
      line('c2', 'charge', '80.00', '2026-05-20', { serviceCode: 'E11.9', description: 'HbA1c lab' }),
      line('p1', 'payment', '50.00', '2026-03-01'),
    ]);
  });

  it('is built from the balance: amount, FIFO aging, lines, name and address, in the guarantor language', async () => {
    const input = (await loadStatementInput({ db: db(), cipher, clock, balanceId, payUrl: PAY_URL }))!;
    assert.equal(input.language, 'es');
    assert.deepEqual(input.amountDue, { amount: 23000, currency: 'USD' });
    assert.deepEqual(input.aging, { current: 8000, days31to60: 0, days61to90: 0, over90: 15000 }, 'the payment paid off the oldest charge first');
    assert.equal(input.statementDate, '2026-06-15');
    assert.deepEqual(input.recipient, { firstName: 'Maria', addressLines: ['1 Elm St', 'Springfield, IL 62704'] });
    assert.equal(input.accountReference, accountReference(balanceId));
    assert.deepEqual(input.lines.map((l) => [l.date, l.kind, l.amountCents]), [['2026-02-01', 'charge', 20000], ['2026-03-01', 'payment', -5000], ['2026-05-20', 'charge', 8000]]);
    assert.equal(await loadStatementInput({ db: db(), cipher, clock, balanceId: '00000000-0000-4000-8000-000000000000', payUrl: PAY_URL }), undefined);
  });

  it('never prints a service code, description, diagnosis or last name, even when the ledger has them', { skip: popplerMissing }, async () => {
    for (const language of ['en', 'es'] as const) {
      const text = pdfText(await renderStatementPdf((await loadStatementInput({ db: db(), cipher, clock, balanceId, payUrl: PAY_URL, language }))!));
      assert.doesNotMatch(text, /99213|E11\.9|diabetes|HbA1c|Office visit|Gonzalez/i);
      assert.match(text, language === 'en' ? /Medical services/ : /Servicios médicos/);
      assert.ok(text.includes('$230.00'));
    }
  });
});
