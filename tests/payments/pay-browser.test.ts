import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { ManualClock } from '../../src/domain/clock.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { PlanRepository } from '../../src/store/plans.ts';
import { browserSkip, launchBrowser, screenshot } from '../support/browser.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { cipher, seedPayHousehold, startPayApp, type PayApp } from './pay-fixtures.ts';
import { paymentRows } from './webhook-fixtures.ts';

if (browserSkip) it('pay page in a browser', { skip: browserSkip }, () => {});
else describeOnEachDatabase('the pay page in headless Chromium', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let app: PayApp;
  let browser: Browser;
  let dir = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'settle-paybrowser-'));
    await seedPayHousehold(db(), clock, 'browser');
    app = await startPayApp(db(), clock, 'browser', dir);
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await app?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const ledger = () => new LedgerRepository(db().pool, cipher, clock);

  it('opens the link, verifies, pays in full in the sandbox: the balance is paid and its write-back queued', async () => {
    const h = await seedPayHousehold(db(), clock, 'browser-full');
    const link = await app.link(h);
    const page = await browser.newPage({ viewport: { width: 390, height: 844 }, locale: 'en-US' });
    await page.goto(link);
    await page.getByLabel('Date of birth').fill('03/07/1984');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('heading', { name: 'Pay your bill' }).waitFor();
    assert.equal(await page.locator('.due').textContent(), '$150.00');
    assert.equal(await page.getByRole('cell', { name: 'Medical services' }).count(), 2);
    await screenshot(page, 'pay-page-en');
    await page.getByRole('link', { name: 'Español' }).click();
    await page.getByRole('heading', { name: 'Pague su factura' }).waitFor();
    assert.equal(await page.locator('html').getAttribute('lang'), 'es');
    await screenshot(page, 'pay-page-es');
    await page.getByRole('button', { name: /Pagar el total/ }).click();
    await page.getByText('Modo de prueba — ningún pago real').first().waitFor();
    await screenshot(page, 'sandbox-checkout-es');
    await page.getByRole('button', { name: /^Pagar/ }).click();
    await page.getByRole('heading', { name: 'Gracias: recibimos su pago' }).waitFor();
    const paymentId = new URL(page.url()).searchParams.get('payment')!;
    for (const id of [h.olderBalanceId, h.newerBalanceId]) assert.equal((await ledger().getBalance(id))!.status, 'paid');
    const rows = await paymentRows(db(), h.practiceId, paymentId);
    assert.deepEqual(rows.outbox.map((o) => [o.kind, o.amount]), [['payment', 15_000]]);
    await page.close();
  });

  it('chooses a payment plan: the first installment is paid and the plan starts', async () => {
    const h = await seedPayHousehold(db(), clock, 'browser-plan');
    const link = await app.link(h);
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
    await page.goto(link);
    await page.getByLabel('ZIP code').fill('02139');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('radio', { name: '3 monthly payments of $50.00' }).check();
    await page.getByRole('button', { name: 'Start plan and pay the first payment' }).click();
    await page.getByText('$50.00').first().waitFor();
    await page.getByRole('button', { name: 'Pay $50.00' }).click();
    await page.getByRole('heading', { name: 'Thank you: your payment was received' }).waitFor();
    const plans = await new PlanRepository(db().pool, clock).forGuarantor(h.practiceId, h.guarantorId);
    assert.equal(plans.length, 1);
    assert.notEqual(plans[0]!.status, 'pending', 'the first installment activated the plan');
    const owed = (await ledger().getBalance(h.olderBalanceId))!.patientAmount.amount + (await ledger().getBalance(h.newerBalanceId))!.patientAmount.amount;
    assert.equal(owed, 10_000);
    await page.goto(link);
    await page.getByText('You are on a payment plan').waitFor();
    await page.close();
  });

  it('works with the keyboard alone, with a visible focus outline', async () => {
    const h = await seedPayHousehold(db(), clock, 'browser-keys');
    const link = await app.link(h);
    const page = await browser.newPage();
    await page.goto(link);
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate<string | undefined>('document.activeElement?.id'), 'birthDate');
    const outline = await page.evaluate<string>('getComputedStyle(document.activeElement).outlineStyle');
    assert.equal(outline, 'solid', 'the focused field shows an outline');
    await page.keyboard.type('1984-03-07');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Pay your bill' }).waitFor();
    // Tab until "Pay in full" has focus, then press Enter.
    for (let i = 0; i < 20; i++) {
      await page.keyboard.press('Tab');
      if ((await page.evaluate<string>("document.activeElement?.textContent ?? ''")).startsWith('Pay in full')) break;
    }
    assert.match(await page.evaluate<string>("document.activeElement?.textContent ?? ''"), /^Pay in full/);
    await page.keyboard.press('Enter');
    await page.getByText('Sandbox — no real payment').first().waitFor();
    await page.keyboard.press('Tab');
    assert.match(await page.evaluate<string>("document.activeElement?.textContent ?? ''"), /^Pay /);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Thank you: your payment was received' }).waitFor();
    assert.equal((await ledger().getBalance(h.olderBalanceId))!.status, 'paid');
    await page.close();
  });

  it('saved the screenshots in both languages', () => {
    for (const name of ['pay-page-en', 'pay-page-es']) assert.ok(existsSync(join(import.meta.dirname, '..', 'artifacts', `${name}.png`)), name);
  });
});
