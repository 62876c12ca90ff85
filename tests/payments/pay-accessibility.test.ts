/**
 * The pay page scanned with axe (WCAG 2 A/AA) in headless Chromium at each step a patient sees, in English and
 * Spanish: the identity check (and its error), the balance view, the plan choice and its sandbox checkout, and the
 * thank-you page.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { ManualClock } from '../../src/domain/clock.ts';
import { assertAccessible } from '../support/axe.ts';
import { browserSkip, launchBrowser } from '../support/browser.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { seedPayHousehold, startPayApp, type PayApp } from './pay-fixtures.ts';

if (browserSkip) it('pay page accessibility', { skip: browserSkip }, () => {});
else describeOnEachDatabase('the pay page passes axe (WCAG 2 A/AA)', (db) => {
  const clock = new ManualClock(new Date('2026-03-02T15:00:00Z'));
  let app: PayApp;
  let browser: Browser;
  let dir = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'settle-payaxe-'));
    await seedPayHousehold(db(), clock, 'axe');
    app = await startPayApp(db(), clock, 'axe', dir);
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await app?.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const { lang, label } of [
    { lang: 'en', label: { birth: 'Date of birth', zip: 'ZIP code', go: 'Continue', bill: 'Pay your bill', language: 'Español', plan: /^3 monthly payments/, start: 'Start plan and pay the first payment', pay: /^Pay \$/, thanks: 'Thank you: your payment was received' } },
    { lang: 'es', label: { birth: 'Fecha de nacimiento', zip: 'Código postal', go: 'Continuar', bill: 'Pague su factura', language: 'English', plan: /^3 pagos mensuales/, start: 'Iniciar el plan y hacer el primer pago', pay: /^Pagar \$/, thanks: 'Gracias: recibimos su pago' } },
  ] as const) {
    it(`identity check, balance view, plan choice and checkout in ${lang === 'en' ? 'English' : 'Spanish'}`, async () => {
      const h = await seedPayHousehold(db(), clock, `axe-${lang}`);
      // Desktop width; the scan covers the phone width too.
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      try {
        const link = new URL(await app.link(h));
        link.searchParams.set('lang', lang);
        await page.goto(link.toString());
        await page.getByLabel(label.birth).waitFor();
        await assertAccessible(page, `the identity check (${lang})`);
        await page.getByLabel(label.zip).fill('99999');
        await page.getByRole('button', { name: label.go }).click();
        await page.getByRole('alert').waitFor();
        await assertAccessible(page, `the identity check with its error (${lang})`);
        await page.getByLabel(label.zip).fill('02139');
        await page.getByRole('button', { name: label.go }).click();
        await page.getByRole('heading', { name: label.bill }).waitFor();
        await assertAccessible(page, `the balance view (${lang})`);
        await page.getByRole('radio', { name: label.plan }).check();
        await assertAccessible(page, `the plan choice (${lang})`);
        await page.getByRole('button', { name: label.start }).click();
        await page.getByRole('button', { name: label.pay }).waitFor();
        await assertAccessible(page, `the sandbox checkout of the first installment (${lang})`);
        await page.getByRole('button', { name: label.pay }).click();
        await page.getByRole('heading', { name: label.thanks }).waitFor();
        await assertAccessible(page, `the thank-you page (${lang})`);
      } finally {
        await page.close();
      }
    });
  }
});
