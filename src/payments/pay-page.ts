/**
 * The pay page's view model, pure: what a verified visitor sees and may choose, in English or Spanish. The
 * HTML template (server-rendered) only formats this model, so PHI minimum-necessary is enforced here: statement
 * lines are a date, "Medical services" and an amount; never a description, code, diagnosis or provider.
 *
 * Choices: pay in full, pay part (between a minimum and the amount due), a payment plan from the practice's
 * terms, download the PDF statement, ask for financial assistance, dispute the bill. A balance on hold or in
 * a plan offers no new payment choices beyond what the state allows.
 */
import { DateTime } from 'luxon';
import { displayMoney, money, MoneyError, parseMoney } from '../domain/money.ts';
import { offeredPlans, type PlanOffer, type PlanTerms } from '../domain/payment-plan.ts';

export type PayPageLocale = 'en' | 'es';

/** One statement line as the pay page may show it: nothing but a date and an amount goes in. */
export interface PayPageLineInput {
  /** ISO date of the service. */
  readonly serviceDate: string;
  readonly amountCents: number;
}

export interface PayPageInput {
  readonly locale: PayPageLocale;
  readonly practice: { readonly name: string; readonly phone: string | null };
  readonly currency: string;
  /** The guarantor's open balances (amounts due after payments and adjustments) and their statement lines. */
  readonly balances: readonly { readonly balanceId: string; readonly openCents: number; readonly lines: readonly PayPageLineInput[] }[];
  readonly planTerms: PlanTerms;
  /** No Stripe key configured: the page says so, clearly. */
  readonly sandbox: boolean;
  /** A hold (dispute, assistance pending, …) or an active plan: show the amount, offer no new payment. */
  readonly state?: 'open' | 'on-hold' | 'in-plan';
  /** The smallest partial payment accepted (default 500 = $5.00; Stripe's own minimum is $0.50). */
  readonly minimumPartCents?: number;
}

export interface PayPageLine {
  readonly date: string;
  readonly label: string;
  readonly amount: string;
  readonly amountCents: number;
}

export interface PayPagePlan extends PlanOffer {
  /** "6 monthly payments: $80.42 today, then 5 × $80.41". */
  readonly text: string;
}

export interface PayPageModel {
  readonly locale: PayPageLocale;
  readonly lang: string;
  readonly practice: { readonly name: string; readonly phone: string | null };
  readonly sandbox: boolean;
  /** Open (payment choices offered), on hold, or in a plan. */
  readonly state: 'open' | 'on-hold' | 'in-plan';
  readonly currency: string;
  readonly amountDueCents: number;
  readonly amountDue: string;
  readonly lines: readonly PayPageLine[];
  readonly choices: {
    readonly payInFull: boolean;
    readonly payPart: { readonly minCents: number; readonly maxCents: number } | null;
    readonly plans: readonly PayPagePlan[];
    readonly statementPdf: boolean;
    readonly financialAssistance: boolean;
    readonly dispute: boolean;
  };
  readonly text: (typeof TEXT)[PayPageLocale];
}

const TEXT = {
  en: {
    title: 'Pay your bill',
    amountDue: 'Amount due',
    medicalServices: 'Medical services',
    payInFull: 'Pay in full',
    payPart: 'Pay part',
    plan: 'Set up a payment plan',
    statement: 'Download statement (PDF)',
    assistance: 'Ask for financial assistance',
    dispute: 'Question this bill',
    sandbox: 'Sandbox: no real payment will be taken',
    questions: 'Questions? Call',
    onHold: 'This bill is on hold while we review it. There is nothing to pay right now.',
    inPlan: 'You are on a payment plan. Your next payment is charged automatically.',
    monthly: (months: number, first: string, rest: string, same: boolean) =>
      same ? `${months} monthly payments of ${rest}` : `${months} monthly payments: ${first} today, then ${months - 1} × ${rest}`,
  },
  es: {
    title: 'Pague su factura',
    amountDue: 'Monto a pagar',
    medicalServices: 'Servicios médicos',
    payInFull: 'Pagar el total',
    payPart: 'Pagar una parte',
    plan: 'Establecer un plan de pagos',
    statement: 'Descargar estado de cuenta (PDF)',
    assistance: 'Solicitar asistencia financiera',
    dispute: 'Consultar sobre esta factura',
    sandbox: 'Modo de prueba: no se cobrará ningún pago real',
    questions: '¿Preguntas? Llame al',
    onHold: 'Esta factura está en espera mientras la revisamos. No tiene que pagar nada por ahora.',
    inPlan: 'Usted tiene un plan de pagos. Su próximo pago se cobrará automáticamente.',
    monthly: (months: number, first: string, rest: string, same: boolean) =>
      same ? `${months} pagos mensuales de ${rest}` : `${months} pagos mensuales: ${first} hoy, luego ${months - 1} × ${rest}`,
  },
} as const;

const INTL_LOCALE: Record<PayPageLocale, string> = { en: 'en-US', es: 'es-US' };

/** Builds the model. Amounts are shown with the currency's own digits, dates in the visitor's language. */
export function payPageModel(input: PayPageInput): PayPageModel {
  const { locale, currency } = input;
  const text = TEXT[locale];
  const show = (cents: number) => displayMoney(money(cents, currency), INTL_LOCALE[locale]);
  const amountDueCents = input.balances.reduce((sum, b) => sum + Math.max(0, b.openCents), 0);
  const lines: PayPageLine[] = input.balances
    .flatMap((b) => b.lines)
    .map((line) => ({ serviceDate: line.serviceDate, amountCents: line.amountCents }))
    .sort((a, b) => (a.serviceDate < b.serviceDate ? -1 : a.serviceDate > b.serviceDate ? 1 : 0))
    .map((line) => ({
      date: DateTime.fromISO(line.serviceDate, { zone: 'UTC' }).setLocale(INTL_LOCALE[locale]).toLocaleString(DateTime.DATE_MED),
      label: text.medicalServices,
      amount: show(line.amountCents),
      amountCents: line.amountCents,
    }));
  const state = input.state ?? 'open';
  const canPay = state === 'open' && amountDueCents > 0;
  const minPart = input.minimumPartCents ?? 500;
  const plans = canPay
    ? offeredPlans(amountDueCents, input.planTerms).map((offer) => ({
        ...offer,
        text: text.monthly(offer.months, show(offer.remainderInstallmentCents), show(offer.installmentCents), offer.remainderInstallmentCents === offer.installmentCents),
      }))
    : [];
  return {
    locale,
    lang: locale,
    practice: { name: input.practice.name, phone: input.practice.phone },
    sandbox: input.sandbox,
    state,
    currency,
    amountDueCents,
    amountDue: show(amountDueCents),
    lines,
    choices: {
      payInFull: canPay,
      payPart: canPay && amountDueCents > minPart ? { minCents: minPart, maxCents: amountDueCents - 1 } : null,
      plans,
      statementPdf: true,
      financialAssistance: state !== 'on-hold',
      dispute: state !== 'on-hold',
    },
    text,
  };
}

/** Why a typed partial amount is refused (shown next to the field). */
export type PartAmountError = 'not-an-amount' | 'below-minimum' | 'above-amount-due' | 'not-offered';

/**
 * Reads the amount typed in "Pay part" (`"25"`, `"25.5"`, `"$1,025.50"`; commas as thousands separators
 * only) exactly, and checks it against the model's bounds.
 */
export function parsePartAmount(typed: string, model: PayPageModel): { ok: true; cents: number } | { ok: false; error: PartAmountError } {
  const bounds = model.choices.payPart;
  if (!bounds) return { ok: false, error: 'not-offered' };
  const cleaned = String(typed).trim().replace(/^\$\s*/, '');
  if (!/^(\d{1,3}(,\d{3})+|\d+)(\.\d*)?$|^\.\d+$/.test(cleaned)) return { ok: false, error: 'not-an-amount' };
  let cents: number;
  try {
    cents = parseMoney(cleaned.replace(/,/g, ''), model.currency).amount;
  } catch (error) {
    if (error instanceof MoneyError) return { ok: false, error: 'not-an-amount' };
    throw error;
  }
  if (cents < bounds.minCents) return { ok: false, error: 'below-minimum' };
  if (cents > bounds.maxCents) return { ok: false, error: 'above-amount-due' };
  return { ok: true, cents };
}
