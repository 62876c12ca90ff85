/**
 * The unsubscribe page in a real browser (headless Chromium): a patient follows the email's link, reads the
 * question in their language, presses the button under the API's real security headers, and is unsubscribed.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { createApi } from '../../src/api/app.ts';
import { EngineMetrics } from '../../src/api/metrics.ts';
import { silentLogger } from '../../src/config/logger.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { loadMappings } from '../../src/mapping/load.ts';
import { unsubscribeUrlFor } from '../../src/outreach/unsubscribe-token.ts';
import { AuditLog } from '../../src/store/audit.ts';
import { OutreachRepository } from '../../src/store/outreach.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { browserSkip, launchBrowser, screenshot } from '../support/browser.ts';
import { ROOT } from '../support/cli.ts';
import { describeOnEachDatabase } from '../support/databases.ts';
import { line, seedBalance } from './letter-fixtures.ts';

describeOnEachDatabase('the unsubscribe page in a browser', (db) => {
  const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });
  const clock = new ManualClock(new Date('2026-04-07T15:00:00Z'));
  let browser: Browser | undefined;
  let http: Server;
  let apiUrl = '';
  let practiceId = '';
  let balanceId = '';

  const emailTo = async (address: string, language: 'en' | 'es') => {
    const outboxId = await new OutreachRepository(db().pool, cipher, clock).addToOutbox({
      practiceId, balanceId, channel: 'email', recipient: address, subject: 'Your statement', body: 'Hi', html: '<p>Hi</p>', language, template: 'statement-ready',
    });
    return { outboxId, url: unsubscribeUrlFor(cipher, apiUrl, outboxId) };
  };

  before(async () => {
    if (browserSkip) return;
    practiceId = (await new PracticeRepository(db().pool).create({ slug: 'unsub-page', name: 'Riverside Family Medicine', timeZone: 'America/Chicago', phone: '(555) 010-0199' })).id;
    balanceId = await seedBalance(db(), cipher, clock, practiceId, 'U1', { name: { given: ['Maria'] }, email: 'maria@example.com' }, [line('c1', 'charge', '150.00', '2026-03-20')]);
    const { app } = createApi({
      configDir: ROOT, cipher, mappings: loadMappings(ROOT), db: db(), clock, logger: silentLogger(), metrics: new EngineMetrics(), version: 'test',
      readiness: { database: async () => ({ ok: true, detail: '' }), migrations: async () => ({ ok: true, detail: '' }), scheduler: () => ({ ok: true, detail: '' }) },
    });
    http = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => http.once('listening', resolve));
    apiUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    http?.closeAllConnections();
    await new Promise((resolve) => (http ? http.close(resolve) : resolve(undefined)));
  });

  it('asks first, then unsubscribes when the button is pressed (English)', { skip: browserSkip }, async () => {
    const { outboxId, url } = await emailTo('maria@example.com', 'en');
    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on('console', (m) => { if (/Content Security Policy|Refused/i.test(m.text())) errors.push(m.text()); });
    page.on('response', (r) => { if (r.status() >= 400 && !r.url().endsWith('/favicon.ico')) errors.push(`${r.status()} ${r.url()}`); });
    await page.goto(url);
    assert.equal(await page.getAttribute('html', 'lang'), 'en');
    assert.equal(await page.locator('h1').innerText(), 'Stop billing emails from Riverside Family Medicine?');
    await screenshot(page, 'unsubscribe-ask-en');
    const rules = () => new OutreachRepository(db().pool, cipher, clock).contactRules(practiceId, { email: 'maria@example.com' });
    assert.equal((await rules()).optOuts.length, 0, 'opening the page changes nothing');
    await page.getByRole('button', { name: 'Unsubscribe' }).click();
    await page.waitForSelector('text=You are unsubscribed');
    await screenshot(page, 'unsubscribe-done-en');
    assert.deepEqual(errors, [], 'no refused resource or failed request (the security headers allow the form)');
    const optOuts = (await rules()).optOuts;
    assert.equal(optOuts.length, 1);
    assert.equal(optOuts[0]!.source, 'email:unsubscribe');
    const events = await db().pool.query("SELECT actor, detail FROM audit_events WHERE practice_id = $1 AND action = 'optout.create'", [practiceId]);
    assert.equal(events.rows.length, 1, 'audited');
    assert.equal(events.rows[0].actor, 'patient:unsubscribe-link');
    assert.equal(events.rows[0].detail.outboxId, outboxId);
    assert.doesNotMatch(JSON.stringify(events.rows), /maria@/i, 'the audit event names the outbox row, not the address');
    assert.equal(await new AuditLog(db(), clock).verify(practiceId), undefined, 'the audit chain holds');
    await page.close();
  });

  it('speaks Spanish to a Spanish-speaking patient, and switches language on request', { skip: browserSkip }, async () => {
    const { url } = await emailTo('jose@example.net', 'es');
    const page = await browser!.newPage();
    await page.goto(url);
    assert.equal(await page.getAttribute('html', 'lang'), 'es');
    assert.equal(await page.locator('h1').innerText(), '¿Dejar de recibir correos de facturación de Riverside Family Medicine?');
    await page.getByRole('link', { name: 'English' }).click();
    assert.equal(await page.locator('h1').innerText(), 'Stop billing emails from Riverside Family Medicine?');
    await page.getByRole('link', { name: 'Español' }).click();
    await page.getByRole('button', { name: 'Cancelar suscripción' }).click();
    await page.waitForSelector('text=Su suscripción fue cancelada');
    await screenshot(page, 'unsubscribe-done-es');
    await page.close();
  });
});
