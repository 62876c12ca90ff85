/**
 * The patient's pages, public (no API key), server-rendered, mounted before the API's JSON parser:
 *
 * | route | what |
 * |---|---|
 * | `GET /p/:token` | every open audited; the identity check, or the pay page once verified |
 * | `POST /p/:token/verify` | birth date or ZIP; attempts limited; a passed check sets the session cookie |
 * | `POST /p/:token/pay` | pay in full, part or a plan: a pending payment, a Checkout Session, 303 to it |
 * | `POST /p/:token/assistance`, `POST /p/:token/dispute` | the balances go on hold and a staff task opens |
 * | `GET /p/:token/statement.pdf` | the PDF statement |
 * | `GET /pay/complete`, `GET /pay/cancelled` | where Checkout sends the patient back (`?payment=<id>`) |
 * | `GET/POST /sandbox/checkout/:id` | the sandbox's stand-in for Stripe Checkout, when no Stripe key is set |
 *
 * A refused link (malformed, unknown, revoked, tampered, expired) always gets the same neutral 404 page.
 * POSTs after the check carry a CSRF token derived from the session cookie.
 */
import express, { type Request, type Response, type Router } from 'express';
import type { Logger } from 'winston';
import type { Clock } from '../domain/clock.ts';
import { displayMoney, money } from '../domain/money.ts';
import { renderStatementsPdf, loadStatementInput } from '../outreach/letter.ts';
import { AuditLog } from '../store/audit.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { LedgerRepository, type Balance } from '../store/ledger.ts';
import { PayLinkRepository, type PayLinkRow } from '../store/pay-links.ts';
import { PaymentRepository } from '../store/payments.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import { StaffTaskRepository } from '../store/staff-tasks.ts';
import type { StripeRequest } from './checkout.ts';
import type { GatewayFor } from './gateway.ts';
import { attemptIdentity, type IdentityAnswer } from './identity-check.ts';
import { cancelledPage, completePage, heldPage, identityPage, invalidLinkPage, lockedPage, PAGE_TEXT, payPage, sandboxCheckoutPage } from './pay-html.ts';
import { payLinkToken, verifyPayLink, type PayLinkKeyRing } from '../domain/pay-link.ts';
import { parsePartAmount, payPageModel, type PayPageLocale, type PayPageModel } from './pay-page.ts';
import { cookieValue, csrfToken, csrfValid, issuePaySession, PAY_SESSION_COOKIE, PAY_SESSION_TTL_SECONDS, readPaySession } from './pay-session.ts';
import type { PlanTerms } from '../domain/payment-plan.ts';
import { PlanProposalError, proposePlan } from './plan-service.ts';
import { startCheckout } from './start-checkout.ts';
import { completeSandboxSession, createSandboxSession, SANDBOX_WEBHOOK_SECRET, signSandboxEvent, type SandboxOutcome } from './sandbox.ts';
import { processStripeWebhook } from './webhook-route.ts';

/** What the patient's pages need. */
export interface PayRoutesDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly cipher: PhiCipher;
  readonly logger: Pick<Logger, 'info' | 'warn'>;
  readonly keys: PayLinkKeyRing;
  /** `SETTLE_PUBLIC_URL`; unset: the address the request came to. */
  readonly publicUrl?: string | undefined;
  /** The practice's gateway: Stripe, or the sandbox when no Stripe key is configured. */
  readonly gatewayFor: GatewayFor;
  /** The practice's plan terms (the policy's `planTerms`). */
  readonly planTerms: (practiceId: string) => PlanTerms;
  /** The sandbox's webhook signing secret (default `SANDBOX_WEBHOOK_SECRET`). */
  readonly sandboxWebhookSecret?: string;
}

const CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self' https://checkout.stripe.com; frame-ancestors 'none'; base-uri 'none'";
const HOLD_REASON = { assistance: 'staff', dispute: 'dispute' } as const;
const PAYABLE = new Set(['open', 'in_outreach']);
const HELD = new Set(['on_hold', 'disputed']);

/** The locale: `?lang=` (or the form's `lang`), then Accept-Language, then English. */
export function payLocale(req: Request): PayPageLocale {
  const asked = (req.body as Record<string, unknown> | undefined)?.lang ?? req.query.lang;
  if (asked === 'es' || asked === 'en') return asked;
  return req.acceptsLanguages('en', 'es') === 'es' ? 'es' : 'en';
}

function send(res: Response, status: number, html: string): void {
  res.status(status).set({ 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Security-Policy': CSP }).send(html);
}

/** The pay page's router. */
export function payRouter(deps: PayRoutesDeps): Router {
  const router = express.Router();
  const links = new PayLinkRepository(deps.db, deps.clock);
  const payments = new PaymentRepository(deps.db.pool, deps.clock);
  const ledger = new LedgerRepository(deps.db.pool, deps.cipher, deps.clock);
  const practices = new PracticeRepository(deps.db.pool);
  const form = express.urlencoded({ extended: false, limit: '16kb' });
  const baseUrl = (req: Request) => (deps.publicUrl ?? `${req.protocol}://${req.get('host')}`).replace(/\/+$/, '');
  const pagePath = (token: string, locale: PayPageLocale) => `/p/${token}?lang=${locale}`;

  /** The link a token names, when it verifies; undefined for every kind of refusal. */
  async function openLink(token: unknown): Promise<PayLinkRow | undefined> {
    let row: PayLinkRow | undefined;
    const result = await verifyPayLink(token, {
      clock: deps.clock,
      keyRing: deps.keys,
      lookup: async (linkId) => {
        row = await links.get(linkId);
        return row && { guarantorId: row.guarantorId, revoked: row.revokedAt !== null };
      },
    });
    if (!result.ok) {
      deps.logger.info('pay link refused', { reason: result.reason, linkId: result.linkId });
      return undefined;
    }
    return row;
  }

  const session = (req: Request) => readPaySession(cookieValue(req.get('cookie'), PAY_SESSION_COOKIE), deps.clock.now(), deps.keys);
  const sessionCsrf = (req: Request) => csrfToken(`session:${cookieValue(req.get('cookie'), PAY_SESSION_COOKIE) ?? ''}`, deps.keys);

  /** A verified session for this link with a valid CSRF token on the form; else the identity page is sent. */
  function requireSession(req: Request, res: Response, link: PayLinkRow, locale: PayPageLocale, checkCsrf: boolean): boolean {
    const ok = session(req)?.linkId === link.linkId
      && (!checkCsrf || csrfValid(`session:${cookieValue(req.get('cookie'), PAY_SESSION_COOKIE) ?? ''}`, (req.body as Record<string, unknown> | undefined)?.csrf, deps.keys));
    if (!ok) sendIdentity(req, res, link, locale, 403, PAGE_TEXT[locale].sessionEnded);
    return ok;
  }

  function sendIdentity(req: Request, res: Response, link: PayLinkRow, locale: PayPageLocale, status: number, error?: string): void {
    const token = String(req.params.token);
    send(res, status, identityPage(locale, {
      action: `/p/${token}/verify`,
      csrf: csrfToken(`verify:${link.linkId}`, deps.keys),
      switchLanguage: pagePath(token, locale === 'en' ? 'es' : 'en'),
      ...(error ? { error } : {}),
    }));
  }

  /** What the guarantor owes now and the model of the page. */
  async function view(link: PayLinkRow, locale: PayPageLocale): Promise<{ model: PayPageModel; shown: Balance[]; payable: Balance[]; practice: { name: string; phone: string | null; timeZone: string } }> {
    const { balances } = await ledger.listBalances(link.practiceId, { guarantorId: link.guarantorId, limit: 500 });
    const owing = balances.filter((b) => b.patientAmount.amount > 0);
    const payable = owing.filter((b) => PAYABLE.has(b.status));
    const inPlan = owing.filter((b) => b.status === 'in_plan');
    const held = owing.filter((b) => HELD.has(b.status));
    const [shown, state] = payable.length > 0 ? [payable, 'open' as const] : inPlan.length > 0 ? [inPlan, 'in-plan' as const] : [held, held.length > 0 ? 'on-hold' as const : 'open' as const];
    shown.sort((a, b) => (a.oldestOpenDate ?? '') < (b.oldestOpenDate ?? '') ? -1 : 1);
    const practiceRow = await practices.findById(link.practiceId);
    const practice = { name: practiceRow?.name ?? '', phone: practiceRow?.phone ?? null, timeZone: practiceRow?.timeZone ?? 'UTC' };
    const balancesIn = await Promise.all(shown.map(async (b) => {
      const byDate = new Map<string, number>();
      for (const e of await ledger.entries(b.id)) {
        if (e.payer === 'patient' && e.kind === 'charge') byDate.set(e.serviceDate, (byDate.get(e.serviceDate) ?? 0) + e.effect);
      }
      return { balanceId: b.id, openCents: b.patientAmount.amount, lines: [...byDate].filter(([, c]) => c > 0).map(([serviceDate, amountCents]) => ({ serviceDate, amountCents })) };
    }));
    const model = payPageModel({
      locale,
      practice: { name: practice.name, phone: practice.phone },
      currency: shown[0]?.patientAmount.currency ?? 'USD',
      balances: balancesIn,
      planTerms: deps.planTerms(link.practiceId),
      sandbox: (await deps.gatewayFor(link.practiceId)).sandbox,
      state,
    });
    return { model, shown, payable, practice };
  }

  function actions(token: string, locale: PayPageLocale) {
    return {
      pay: `/p/${token}/pay`, assistance: `/p/${token}/assistance`, dispute: `/p/${token}/dispute`,
      statement: `/p/${token}/statement.pdf?lang=${locale}`, switchLanguage: pagePath(token, locale === 'en' ? 'es' : 'en'),
    };
  }

  async function sendPayPage(req: Request, res: Response, link: PayLinkRow, locale: PayPageLocale, status = 200, error?: { field: 'part' | 'plan'; message: string }): Promise<void> {
    const { model } = await view(link, locale);
    send(res, status, payPage(model, { actions: actions(String(req.params.token), locale), csrf: sessionCsrf(req), ...(error ? { error } : {}) }));
  }

  router.get('/p/:token', async (req, res) => {
    const locale = payLocale(req);
    const link = await openLink(req.params.token);
    if (!link) return send(res, 404, invalidLinkPage(locale));
    const verified = session(req)?.linkId === link.linkId;
    await links.recordOpen(link, { verified });
    if (verified) return sendPayPage(req, res, link, locale);
    if (link.attempts.lockedUntil !== null && link.attempts.lockedUntil > deps.clock.now().getTime()) return send(res, 429, lockedPage(locale));
    sendIdentity(req, res, link, locale, 200);
  });

  router.post('/p/:token/verify', form, async (req, res) => {
    const locale = payLocale(req);
    const link = await openLink(req.params.token);
    if (!link) return send(res, 404, invalidLinkPage(locale));
    const t = PAGE_TEXT[locale];
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (!csrfValid(`verify:${link.linkId}`, body.csrf, deps.keys)) return sendIdentity(req, res, link, locale, 403, t.sessionEnded);
    const birthDate = typeof body.birthDate === 'string' ? body.birthDate.trim() : '';
    const zip = typeof body.zip === 'string' ? body.zip.trim() : '';
    const contact = await ledger.getGuarantorContact(link.guarantorId);
    const onFile = { ...(contact?.birthDate ? { birthDate: contact.birthDate } : {}), ...(contact?.address?.postalCode ? { zip: contact.address.postalCode } : {}) };
    const answers: IdentityAnswer[] = [];
    if (birthDate !== '') answers.push({ kind: 'birth-date', text: birthDate });
    if (zip !== '') answers.push({ kind: 'zip', text: zip });
    if (answers.length === 0) return sendIdentity(req, res, link, locale, 422, t.invalidAnswer);
    const now = deps.clock.now().getTime();
    const decided = await links.attempt(link, (state) => {
      let step = attemptIdentity(state, answers[0]!, onFile, now);
      // The birth date cannot be checked (none on file, or not a date): the ZIP typed beside it is tried instead.
      if (answers[1] && (step.outcome.result === 'unavailable' || step.outcome.result === 'invalid')) step = attemptIdentity(step.state, answers[1], onFile, now);
      return { ...step, result: step.outcome.result };
    });
    if (!decided) return send(res, 404, invalidLinkPage(locale));
    const outcome = decided.outcome;
    if (outcome.result === 'verified') {
      res.cookie(PAY_SESSION_COOKIE, issuePaySession(link.linkId, deps.clock.now(), deps.keys), {
        httpOnly: true, sameSite: 'lax', path: '/', maxAge: PAY_SESSION_TTL_SECONDS * 1000, secure: baseUrl(req).startsWith('https:'),
      });
      return res.redirect(303, pagePath(String(req.params.token), locale));
    }
    if (outcome.result === 'locked') return send(res, 429, lockedPage(locale));
    if (outcome.result === 'mismatch') return sendIdentity(req, res, link, locale, 422, t.mismatch(outcome.remaining));
    sendIdentity(req, res, link, locale, 422, outcome.result === 'invalid' ? t.invalidAnswer : t.unavailable);
  });

  router.post('/p/:token/pay', form, async (req, res) => {
    const locale = payLocale(req);
    const link = await openLink(req.params.token);
    if (!link) return send(res, 404, invalidLinkPage(locale));
    if (!requireSession(req, res, link, locale, true)) return;
    const t = PAGE_TEXT[locale];
    const body = (req.body ?? {}) as Record<string, unknown>;
    const { model, payable, practice } = await view(link, locale);
    if (!model.choices.payInFull || payable.length === 0) return sendPayPage(req, res, link, locale, 409);
    let cents = model.amountDueCents;
    let plan: { planId: string } | undefined;
    if (body.choice === 'part') {
      const parsed = parsePartAmount(String(body.amount ?? ''), model);
      if (!parsed.ok) return sendPayPage(req, res, link, locale, 422, { field: 'part', message: t.partErrors[parsed.error] ?? t.partErrors['not-an-amount']! });
      cents = parsed.cents;
    } else if (body.choice === 'plan') {
      const offer = model.choices.plans.find((p) => String(p.months) === body.months);
      if (!offer) return sendPayPage(req, res, link, locale, 422, { field: 'plan', message: t.planError });
      const { text: _text, ...planOffer } = offer;
      try {
        const proposed = await proposePlan({ db: deps.db, clock: deps.clock }, {
          practiceId: link.practiceId, guarantorId: link.guarantorId, balanceIds: payable.map((b) => b.id), offer: planOffer, timeZone: practice.timeZone,
        });
        plan = { planId: proposed.planId };
        cents = proposed.firstInstallment.amount;
      } catch (error) {
        // The balance changed since the offers were shown: show the current ones.
        if (error instanceof PlanProposalError) return sendPayPage(req, res, link, locale, 409, { field: 'plan', message: t.planError });
        throw error;
      }
    } else if (body.choice !== 'full') {
      return sendPayPage(req, res, link, locale, 422);
    }
    const amount = money(cents, model.currency);
    const base = baseUrl(req);
    const gateway = await deps.gatewayFor(link.practiceId);
    const { paymentId, session, request } = await startCheckout({ db: deps.db, clock: deps.clock, gateway }, {
      practiceId: link.practiceId, guarantorId: link.guarantorId, balanceIds: payable.map((b) => b.id), amount, baseUrl: base, locale, ...(plan ? { plan } : {}),
    });
    await links.recordCheckout({
      paymentId, practiceId: link.practiceId, linkId: link.linkId, sessionId: session.id, sandbox: gateway.sandbox,
      request: request as unknown as { params: Record<string, unknown>; idempotencyKey: string }, locale,
    });
    deps.logger.info('checkout started', { linkId: link.linkId, paymentId, sandbox: gateway.sandbox, plan: plan !== undefined });
    // The sandbox page is served here, whatever base URL the gateway was built with.
    res.redirect(303, gateway.sandbox ? `${base}/sandbox/checkout/${encodeURIComponent(session.id)}` : session.url);
  });

  for (const kind of ['assistance', 'dispute'] as const) {
    router.post(`/p/:token/${kind}`, form, async (req, res) => {
      const locale = payLocale(req);
      const link = await openLink(req.params.token);
      if (!link) return send(res, 404, invalidLinkPage(locale));
      if (!requireSession(req, res, link, locale, true)) return;
      const { shown, practice } = await view(link, locale);
      const raw = (req.body as Record<string, unknown> | undefined)?.note;
      const note = typeof raw === 'string' && raw.trim() !== '' ? raw.trim().slice(0, 500) : null;
      const actor = `patient:${link.linkId}`;
      await withTransaction(deps.db, async (tx) => {
        const held = ledger.on(tx);
        const toHold = shown.filter((x) => !HELD.has(x.status));
        await held.lockBalances(toHold.map((b) => b.id));
        for (const b of toHold) {
          await held.setStatus(b.id, { status: 'on_hold', holdReason: HOLD_REASON[kind], actor, note: kind === 'assistance' ? 'financial assistance requested on the pay page' : 'bill questioned on the pay page' });
        }
        const task = await new StaffTaskRepository(tx, deps.clock).open({
          practiceId: link.practiceId, kind, guarantorId: link.guarantorId, balanceId: shown.length === 1 ? shown[0]!.id : null, note, subjectRef: `pay_link:${link.linkId}`,
        });
        await new AuditLog(deps.db, deps.clock).append({
          practiceId: link.practiceId, actor, action: `paylink.${kind}`, entityType: 'staff_task', entityId: task.id, detail: { balanceIds: shown.map((b) => b.id) },
        }, tx);
      });
      deps.logger.info('pay page request recorded', { linkId: link.linkId, kind, balances: shown.length });
      send(res, 200, heldPage(locale, kind, practice));
    });
  }

  router.get('/p/:token/statement.pdf', async (req, res) => {
    const locale = payLocale(req);
    const link = await openLink(req.params.token);
    if (!link) return send(res, 404, invalidLinkPage(locale));
    if (!requireSession(req, res, link, locale, false)) return;
    const { shown } = await view(link, locale);
    const payUrl = `${baseUrl(req)}/p/${String(req.params.token)}`;
    const inputs = (await Promise.all(shown.map((b) => loadStatementInput({ db: deps.db, cipher: deps.cipher, clock: deps.clock, balanceId: b.id, payUrl, language: locale }))))
      .filter((i) => i !== undefined);
    if (inputs.length === 0) return sendPayPage(req, res, link, locale, 404);
    const pdf = await renderStatementsPdf(inputs);
    res.status(200).set({ 'Content-Type': 'application/pdf', 'Content-Disposition': 'attachment; filename="statement.pdf"', 'Cache-Control': 'no-store' }).send(pdf);
  });

  router.get('/pay/complete', async (req, res) => {
    const checkout = await links.checkoutByPayment(String(req.query.payment ?? ''));
    const locale = checkout?.locale ?? payLocale(req);
    if (!checkout) return send(res, 404, invalidLinkPage(locale));
    const payment = await payments.get(checkout.practiceId, checkout.paymentId);
    const practice = await practices.findById(checkout.practiceId);
    send(res, 200, completePage(locale, payment?.status === 'succeeded', { name: practice?.name ?? '', phone: practice?.phone ?? null }, checkout.sandbox));
  });

  router.get('/pay/cancelled', async (req, res) => {
    const checkout = await links.checkoutByPayment(String(req.query.payment ?? ''));
    const locale = checkout?.locale ?? payLocale(req);
    const link = checkout && (await links.get(checkout.linkId));
    let back: string | undefined;
    if (link && deps.keys.keys.has(link.keyId)) back = pagePath(payLinkToken(link, deps.keys), locale);
    send(res, 200, cancelledPage(locale, back));
  });

  /** The sandbox checkout of a session, when the visitor holds the session of the link that started it. */
  async function sandboxCheckout(req: Request) {
    const checkout = await links.checkoutBySession(String(req.params.id));
    if (!checkout || !checkout.sandbox || !(await deps.gatewayFor(checkout.practiceId)).sandbox) return undefined;
    if (session(req)?.linkId !== checkout.linkId) return undefined;
    return checkout;
  }

  router.get('/sandbox/checkout/:id', async (req, res) => {
    const checkout = await sandboxCheckout(req);
    if (!checkout) return send(res, 404, invalidLinkPage(payLocale(req)));
    const locale = checkout.locale;
    send(res, 200, sandboxCheckoutPage(locale, { amount: await checkoutAmount(checkout.paymentId, checkout.practiceId, locale), action: `/sandbox/checkout/${encodeURIComponent(checkout.sessionId)}`, csrf: sessionCsrf(req) }));
  });

  router.post('/sandbox/checkout/:id', form, async (req, res) => {
    const checkout = await sandboxCheckout(req);
    if (!checkout) return send(res, 404, invalidLinkPage(payLocale(req)));
    const locale = checkout.locale;
    const body = (req.body ?? {}) as Record<string, unknown>;
    const action = `/sandbox/checkout/${encodeURIComponent(checkout.sessionId)}`;
    const amount = await checkoutAmount(checkout.paymentId, checkout.practiceId, locale);
    if (!csrfValid(`session:${cookieValue(req.get('cookie'), PAY_SESSION_COOKIE) ?? ''}`, body.csrf, deps.keys)) {
      return send(res, 403, sandboxCheckoutPage(locale, { amount, action, csrf: sessionCsrf(req) }));
    }
    const outcome: SandboxOutcome = body.outcome === 'card_declined' ? 'card_declined' : 'succeeded';
    const request = checkout.request as unknown as StripeRequest<Parameters<typeof createSandboxSession>[0]['params']>;
    const sandboxSession = createSandboxSession(request, { clock: deps.clock, baseUrl: baseUrl(req) });
    const secret = deps.sandboxWebhookSecret ?? SANDBOX_WEBHOOK_SECRET;
    // The same verification and handler as Stripe's own deliveries.
    for (const event of completeSandboxSession(sandboxSession, { clock: deps.clock, outcome })) {
      const { payload, header } = signSandboxEvent(event, { clock: deps.clock, secret });
      await processStripeWebhook({ db: deps.db, clock: deps.clock, practiceId: checkout.practiceId, cipher: deps.cipher, logger: deps.logger, secrets: secret }, Buffer.from(payload), header);
    }
    if (outcome !== 'succeeded') return send(res, 402, sandboxCheckoutPage(locale, { amount, action, csrf: sessionCsrf(req), declined: true }));
    res.redirect(303, sandboxSession.success_url.replace('{CHECKOUT_SESSION_ID}', encodeURIComponent(sandboxSession.id)));
  });

  async function checkoutAmount(paymentId: string, practiceId: string, locale: PayPageLocale): Promise<string> {
    const payment = await payments.get(practiceId, paymentId);
    if (!payment) return '';
    return displayMoney(payment.amount, locale === 'es' ? 'es-US' : 'en-US');
  }

  return router;
}
