import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { StaffTaskRepository } from '../../src/store/staff-tasks.ts';
import { assertAccessible } from '../support/axe.ts';
import { browserSkip, launchBrowser, screenshot } from '../support/browser.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { cipher } from '../payments/webhook-fixtures.ts';
import { startDashboard, type DashboardFixture } from './support.ts';

// Globals of the page, used inside functions that run in the browser (the project compiles without the DOM lib).
interface PageElement { id: string; textContent: string | null }
declare const document: { activeElement: PageElement | null; querySelector(selector: string): PageElement | null };
declare function getComputedStyle(element: PageElement): { outlineStyle: string };

describeOnEachDatabase('Staff dashboard in headless Chromium', (db, engine) => {
  let f: DashboardFixture;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  before(async () => {
    if (browserSkip) return;
    f = await startDashboard(db(), `dash-browser-${engine}`);
    const ledger = new LedgerRepository(db().pool, cipher, f.clock);
    await ledger.setStatus(f.household.olderBalanceId, { status: 'disputed', actor: 'patient:paylink', note: 'disputed from the pay page' });
    await new StaffTaskRepository(db().pool, f.clock).open({
      practiceId: f.household.practiceId, kind: 'dispute', balanceId: f.household.olderBalanceId, guarantorId: f.household.guarantorId, note: 'I paid this at the desk',
    });
    await new OutreachRepository(db().pool, cipher, f.clock).recordAttempt({
      practiceId: f.household.practiceId, balanceId: f.household.olderBalanceId, stepId: 'statement-ready', channel: 'sms',
      plannedAt: new Date('2026-05-20T14:00:00Z'), status: 'suppressed', rule: 'sms-consent', reason: 'no recorded consent to text this number',
    });
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (message) => { if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`); });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()}`));
    page.on('response', (response) => { if (response.status() >= 400) problems.push(`${response.status()} for ${response.url()}`); });
  });
  after(async () => {
    await browser?.close();
    await f?.close();
  });

  /** Every visible form control has a label. */
  async function assertLabelled(): Promise<void> {
    const unlabelled = await page.$$eval('input:not([type=hidden]), select, textarea', (controls) =>
      controls.filter((c) => !(c.id && document.querySelector(`label[for="${c.id}"]`)) && !c.getAttribute('aria-label')).map((c) => c.outerHTML));
    assert.deepEqual(unlabelled, [], 'every form control has a label');
  }

  /** Presses Tab until `selector` has focus (at most `max` times); returns how many presses it took. */
  async function tabTo(selector: string, max = 60): Promise<number> {
    for (let i = 1; i <= max; i++) {
      await page.keyboard.press('Tab');
      if (await page.$eval(selector, (el) => el === document.activeElement).catch(() => false)) return i;
    }
    assert.fail(`Tab never reached ${selector}`);
  }

  it('signs in with the keyboard: type the key, Enter submits', { skip: browserSkip }, async () => {
    await page.goto(`${f.url}/dashboard`);
    assert.match(page.url(), /\/dashboard\/login$/);
    await assertLabelled();
    await assertAccessible(page, 'the sign-in page');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'key', 'the key field has focus');
    await page.keyboard.type(f.keys.staff.secret);
    await Promise.all([page.waitForURL(`${f.url}/dashboard`), page.keyboard.press('Enter')]);
    assert.equal(await page.textContent('h1'), 'Overview');
  });

  it('shows the overview with its charts drawn from the ledger', { skip: browserSkip }, async () => {
    assert.equal(await page.$$eval('main figure svg[role=img]', (svgs) => svgs.length), 6);
    const values = await page.$$eval('#chart-collection rect.bar', (bars) => bars.map((b) => ({ value: Number(b.getAttribute('data-value')), width: Number(b.getAttribute('width')) })));
    assert.ok(values.some((v) => v.value === 10_000 && v.width > 0), 'January billed $100.00 is a visible bar');
    assert.ok(values.some((v) => v.value === 5_000 && v.width > 0), 'February billed $50.00 is a visible bar');
    const agingBox = await page.locator('#chart-aging svg').boundingBox();
    assert.ok(agingBox && agingBox.width > 200 && agingBox.height > 50, 'the aging chart is drawn at a readable size');
    assert.match(await page.textContent('.figures') ?? '', /Outstanding now\s*\$150\.00/);
    assert.match(await page.textContent('main') ?? '', /figures as of \d{4}-\d{2}-\d{2} \d{2}:\d{2} \(refreshed every few minutes\)/, 'the overview says how fresh its figures are');
    await assertAccessible(page, 'the overview');
    await screenshot(page, 'dashboard-overview');
  });

  it('reaches the skip link first and the navigation by Tab', { skip: browserSkip }, async () => {
    await page.goto(`${f.url}/dashboard`);
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle);
    assert.equal(outline, 'solid', 'focus is visible');
    await tabTo('nav a[href="/dashboard/worklist"]');
    await Promise.all([page.waitForURL(`${f.url}/dashboard/worklist`), page.keyboard.press('Enter')]);
    assert.equal(await page.textContent('h1'), 'Worklist');
  });

  it('resolves a dispute from the worklist with the keyboard, which lifts the hold in the ledger', { skip: browserSkip }, async () => {
    await assertLabelled();
    assert.match(await page.textContent('main table') ?? '', /I paid this at the desk/);
    await assertAccessible(page, 'the worklist');
    await screenshot(page, 'dashboard-worklist');
    await tabTo('form:has(input[value="lift-hold"]) input[name=note]');
    await page.keyboard.type('Paid at the front desk on May 2');
    await tabTo('form:has(input[value="lift-hold"]) button');
    await Promise.all([page.waitForURL(/notice=hold-lifted/), page.keyboard.press('Enter')]);
    assert.match(await page.textContent('.notice') ?? '', /hold is lifted/);
    assert.match(await page.textContent('main table') ?? '', /Nothing needs a person/);
    const ledger = new LedgerRepository(db().pool, cipher, f.clock);
    const balance = await ledger.getBalance(f.household.olderBalanceId);
    assert.equal(balance?.status, 'open');
    const last = (await ledger.statusHistory(f.household.olderBalanceId)).at(-1)!;
    assert.deepEqual([last.fromStatus, last.toStatus, last.actor, last.note], ['disputed', 'open', `apikey:${f.keys.staff.id}`, 'Paid at the front desk on May 2']);
    const task = (await new StaffTaskRepository(db().pool, f.clock).list(f.household.practiceId, { kind: 'dispute' }))[0]!;
    assert.equal(task.status, 'resolved');
  });

  it("opens a balance's timeline, showing the suppression and its reason", { skip: browserSkip }, async () => {
    await page.click('nav a[href="/dashboard/balances"]');
    await page.waitForURL(`${f.url}/dashboard/balances`);
    await assertAccessible(page, 'the balances list');
    await page.click(`a[href="/dashboard/balances/${f.household.olderBalanceId}"]`);
    await page.waitForURL(`${f.url}/dashboard/balances/${f.household.olderBalanceId}`);
    const timeline = page.locator('table', { has: page.locator('caption', { hasText: 'Outreach attempts' }) });
    const row = await timeline.locator('tbody tr').first().textContent();
    assert.match(row ?? '', /statement-ready/);
    assert.match(row ?? '', /suppressed/);
    assert.match(row ?? '', /sms-consent/);
    assert.match(row ?? '', /no recorded consent to text this number/);
    assert.match(await page.textContent('main') ?? '', /disputed\s*open/, 'the status history shows the hold lifted');
    await assertLabelled();
    await assertAccessible(page, 'the balance detail');
    await screenshot(page, 'dashboard-balance-timeline');
  });

  it('renders every other page without a console error, CSP violation or failed request', { skip: browserSkip }, async () => {
    for (const path of ['/dashboard/connectors', '/dashboard/outbox', '/dashboard/policies']) {
      const response = await page.goto(`${f.url}${path}`);
      assert.equal(response?.status(), 200, path);
      await assertLabelled();
      await assertAccessible(page, path);
      await screenshot(page, `dashboard${path.replaceAll('/', '-').replace('-dashboard', '')}`);
    }
    assert.match(await page.textContent('main') ?? '', /statement-ready · sms · en/);
    assert.deepEqual(problems, []);
  });
});
