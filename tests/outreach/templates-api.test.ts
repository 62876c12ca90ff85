/**
 * Template previews through the API: staff list every template and render one in English or Spanish with the
 * sample values (or their own), seeing the SMS segment count; a template naming a non-allow-listed field cannot
 * exist, and bad values are named.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, it } from 'node:test';
import express from 'express';
import { problemHandler } from '../../src/api/problem.ts';
import { mountRoutes } from '../../src/api/routes.ts';
import { silentLogger } from '../../src/config/logger.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { outreachRoutes } from '../../src/outreach/routes.ts';
import { ApiKeyRepository } from '../../src/store/api-keys.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

const cipher = new PhiCipher({ encryptionKeys: [{ id: 'k1', key: randomBytes(32) }], blindIndexKey: randomBytes(32) });

describeOnEachDatabase('template previews', (db) => {
  const clock = new ManualClock(new Date('2026-04-07T15:00:00Z'));
  let base = '';
  let staff = '';
  let integration = '';
  let server: ReturnType<ReturnType<typeof express>['listen']> | undefined;
  const call = async (path: string, key: string, body?: unknown) => {
    const response = await fetch(`${base}${path}`, {
      method: body === undefined ? 'GET' : 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, json: (await response.json()) as Record<string, unknown> };
  };

  before(async () => {
    const practiceId = (await new PracticeRepository(db().pool).create({ slug: 'templates-test', name: 'Riverside Family Medicine' })).id;
    const keys = new ApiKeyRepository(db().pool, clock);
    staff = (await keys.create(practiceId, 'staff', 'staff')).secret;
    integration = (await keys.create(practiceId, 'integration', 'integration')).secret;
    const app = express();
    app.use(express.json());
    const router = express.Router();
    mountRoutes(router, outreachRoutes({ db: db(), cipher, clock }), (presented) => keys.authenticate(presented));
    app.use(router);
    app.use(problemHandler(silentLogger()));
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server!.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => (server ? (server.closeAllConnections(), server.close(() => resolve())) : resolve())));

  it('lists every template in English and Spanish with the fields it uses, all allow-listed', async () => {
    const { status, json } = await call('/templates', staff);
    assert.equal(status, 200);
    const templates = json.templates as { name: string; channel: string; language: string; fields: string[] }[];
    assert.equal(templates.length, 30, 'five templates × three channels × two languages');
    assert.ok(templates.some((t) => t.name === 'final-notice' && t.channel === 'sms' && t.language === 'es'));
    for (const t of templates) for (const f of t.fields) assert.ok((json.fields as string[]).includes(f), `${t.name} uses ${f}`);
    assert.equal((await call('/templates', integration)).status, 403);
  });

  it('previews a text in Spanish with the sample values, reporting one GSM-7 segment', async () => {
    const { status, json } = await call('/templates/statement-ready/preview', staff, { channel: 'sms', language: 'es' });
    assert.equal(status, 200);
    assert.equal(json.language, 'es');
    assert.match(json.text as string, /^Riverside Family Medicine: Hola Maria, su saldo de \$1,234\.56: https:\/\/pay\.rfm\.org\/p\/\S{32} STOP para salir$/);
    assert.deepEqual(json.sms, { encoding: 'GSM-7', units: (json.text as string).length, segments: 1 });
  });

  it('previews an email with the values given, escaped in its HTML part', async () => {
    const { status, json } = await call('/templates/final-notice/preview', staff, {
      channel: 'email', values: { firstName: 'Ann <b>', amountDueCents: 4250, practiceName: 'Lakeside Pediatrics' },
    });
    assert.equal(status, 200);
    assert.equal(json.subject, 'Final notice from Lakeside Pediatrics');
    assert.match(json.text as string, /^Hi Ann <b>,\n\nThis is a final notice: your balance of \$42\.50 is past due/);
    assert.match(json.html as string, /Hi Ann &lt;b&gt;,/);
    assert.equal(json.sms, null);
  });

  it('names what is wrong: an unknown template, a value a template cannot take, a field outside the allow-list', async () => {
    const missing = await call('/templates/no-such/preview', staff, { channel: 'sms' });
    assert.equal(missing.status, 404);
    const badLink = await call('/templates/statement-ready/preview', staff, { channel: 'sms', values: { payLink: 'javascript:alert(1)' } });
    assert.equal(badLink.status, 400);
    assert.deepEqual((badLink.json.errors as { path: string }[]).map((e) => e.path), ['/values/payLink']);
    const clinical = await call('/templates/statement-ready/preview', staff, { channel: 'sms', values: { diagnosis: 'E11.9' } });
    assert.equal(clinical.status, 400);
    assert.match(JSON.stringify(clinical.json.errors), /\/values\/diagnosis/);
    const fractional = await call('/templates/statement-ready/preview', staff, { channel: 'letter', values: { amountDueCents: 12.5 } });
    assert.equal(fractional.status, 400);
  });
});
