/** Shared set-up for the pay-link, pay-page and browser tests: a practice, a guarantor who owes, the real API. */
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApi } from '../../src/api/app.ts';
import { EngineMetrics } from '../../src/api/metrics.ts';
import { parsePracticeSecrets } from '../../src/config/settings.ts';
import type { ManualClock } from '../../src/domain/clock.ts';
import { money, type Money } from '../../src/domain/money.ts';
import { loadMappings } from '../../src/mapping/load.ts';
import { payLinkForGuarantor } from '../../src/store/guarantor-pay-links.ts';
import { parsePayLinkKeys, type PayLinkKeyRing } from '../../src/domain/pay-link.ts';
import { createPaymentsWiring, type PaymentsWiring } from '../../src/payments/pay-wiring.ts';
import { withTransaction, type Database } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { ROOT } from '../support/cli.ts';
import { cipher, silentLogger } from './webhook-fixtures.ts';
import type { StripeGatewayOptions } from '../../src/payments/stripe-gateway.ts';

export { cipher, silentLogger };

/** The guarantor's birth date and ZIP on file (fictitious). */
export const BIRTH_DATE = '1984-03-07';
export const ZIP = '02139';

export interface PayHousehold {
  practiceId: string;
  guarantorId: string;
  /** 2026-01-05, $100.00 (description "Office visit, 99213" must never be shown). */
  olderBalanceId: string;
  /** 2026-02-10, $50.00. */
  newerBalanceId: string;
}

/** A practice with one self-guarantor patient owing $100.00 and $50.00, birth date and ZIP on file. */
export async function seedPayHousehold(db: Database, clock: ManualClock, slug: string): Promise<PayHousehold> {
  const practiceId = (await new PracticeRepository(db.pool).create({ slug, name: 'Riverside Family Clinic', timeZone: 'America/New_York', phone: '(617) 555-0100' })).id;
  const ledger = new LedgerRepository(db.pool, cipher, clock);
  const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: `P-${slug}` }, {
    name: { given: ['Alex'], family: 'Example' }, birthDate: BIRTH_DATE, address: { lines: ['1 Main St'], city: 'Cambridge', state: 'MA', postalCode: ZIP }, language: 'en',
  });
  const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
  const balance = async (acct: string, date: string, amount: Money) => {
    const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: acct }, patientId });
    const result = await withTransaction(db, (tx) =>
      ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: acct, versionId: '1', lastUpdated: null },
        { accountId, guarantorId, patientId },
        [{ lineKey: 'l0', kind: 'charge', amount, serviceDate: date, payer: 'patient', serviceCode: '99213', description: 'Office visit, 99213' }]),
    );
    return result.balanceIds[0]!;
  };
  const newerBalanceId = await balance(`${slug}-B`, '2026-02-10', money(5_000, 'USD'));
  const olderBalanceId = await balance(`${slug}-A`, '2026-01-05', money(10_000, 'USD'));
  return { practiceId, guarantorId, olderBalanceId, newerBalanceId };
}

/** A fresh pay-link key ring. */
export function testKeys(): PayLinkKeyRing {
  return parsePayLinkKeys(`7:${randomBytes(32).toString('base64url')}`);
}

/** The webhook signing secret the test app is configured with (besides the sandbox's). */
export const TEST_WEBHOOK_SECRET = 'whsec_pay_routes_test';

/** The real API with the pay routes, in sandbox mode, on a loopback port. */
export interface PayApp {
  url: string;
  wiring: PaymentsWiring;
  keys: PayLinkKeyRing;
  /** A pay link for the household's guarantor, on this server. */
  link(h: PayHousehold): Promise<string>;
  close(): Promise<void>;
}

/** Starts the API with payments wired (the sandbox gateway unless a Stripe key is given; the webhook endpoint serves practice `slug`). */
export async function startPayApp(
  db: Database, clock: ManualClock, slug: string, dataDir: string,
  /**
   * Stripe keys (`STRIPE_SECRET_KEY`, and `STRIPE_SECRET_KEYS` per practice) and where the SDK connects (the
   * Stripe fake): real Checkout instead of the sandbox for the practices they serve.
   */
  stripe?: { secretKey?: string; secretKeys?: string; options: StripeGatewayOptions },
  /** `STRIPE_WEBHOOK_SECRETS` as set in the environment: per practice webhook endpoints. */
  stripeWebhookSecrets?: string,
): Promise<PayApp> {
  const keys = testKeys();
  const wiring = await createPaymentsWiring({
    db, clock, logger: silentLogger, dataDir, sharedDatabase: false, payLinkKeys: `7:${Buffer.from(keys.keys.get(7)!).toString('base64url')}`,
    stripeWebhookSecret: TEST_WEBHOOK_SECRET, webhookPracticeSlug: slug, planTerms: { minimumInstallmentCents: 2500, maximumMonths: 6 },
    ...(stripe ? { stripeSecretKey: stripe.secretKey, stripeSecretKeys: parsePracticeSecrets('STRIPE_SECRET_KEYS', stripe.secretKeys), stripe: stripe.options } : {}),
    stripeWebhookSecrets: parsePracticeSecrets('STRIPE_WEBHOOK_SECRETS', stripeWebhookSecrets),
  });
  const api = createApi({
    configDir: ROOT, cipher, mappings: loadMappings(ROOT), db, clock, logger: silentLogger, metrics: new EngineMetrics(), version: 'test',
    readiness: { database: async () => ({ ok: true, detail: '' }), migrations: async () => ({ ok: true, detail: '' }), scheduler: () => ({ ok: true, detail: '' }) },
    payments: wiring,
  });
  const server: Server = api.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    wiring,
    keys: wiring.keys,
    link: (h) => payLinkForGuarantor({ db, clock, keys: wiring.keys, publicUrl: url }, { practiceId: h.practiceId, guarantorId: h.guarantorId }),
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/** A visitor with a cookie jar, following no redirects (each answer is inspected). */
export class Visitor {
  cookie: string | undefined;
  readonly headers: Record<string, string>;
  constructor(headers: Record<string, string> = {}) {
    this.headers = headers;
  }

  async get(url: string): Promise<{ status: number; text: string; res: Response }> {
    const res = await fetch(url, { redirect: 'manual', headers: { ...this.headers, ...(this.cookie ? { cookie: this.cookie } : {}) } });
    this.#keep(res);
    return { status: res.status, text: await res.text(), res };
  }

  async post(url: string, form: Record<string, string>): Promise<{ status: number; text: string; res: Response }> {
    const res = await fetch(url, {
      method: 'POST', redirect: 'manual', body: new URLSearchParams(form),
      headers: { ...this.headers, 'content-type': 'application/x-www-form-urlencoded', ...(this.cookie ? { cookie: this.cookie } : {}) },
    });
    this.#keep(res);
    return { status: res.status, text: await res.text(), res };
  }

  #keep(res: Response): void {
    const set = res.headers.get('set-cookie');
    if (set) this.cookie = set.split(';')[0];
  }
}

/** The CSRF token of the first form on a page. */
export function csrfOf(html: string): string {
  const m = /name="csrf" value="([^"]+)"/.exec(html);
  if (!m) throw new Error('the page has no form with a CSRF token');
  return m[1]!;
}

/** Opens the link and passes the identity check with the birth date; returns the pay page's HTML. */
export async function verified(visitor: Visitor, link: string, lang = 'en'): Promise<string> {
  const page = await visitor.get(`${link}?lang=${lang}`);
  const answer = await visitor.post(`${link}/verify`, { csrf: csrfOf(page.text), lang, birthDate: '03/07/1984', zip: '' });
  if (answer.status !== 303) throw new Error(`identity check answered ${answer.status}`);
  return (await visitor.get(`${link}?lang=${lang}`)).text;
}
