/**
 * The pay page's HTML, server-rendered: no script, no external resource, inline CSS, mobile first, every form
 * a plain POST that works without JavaScript. Accessible: `lang` on the page, one `h1`, labels on every field,
 * errors announced (`role="alert"`) and tied to their field (`aria-describedby`), visible focus outlines, text
 * and buttons above WCAG AA contrast. Every value is HTML-escaped.
 */
import { displayMoney, money } from '../domain/money.ts';
import type { PayPageLocale, PayPageModel } from './pay-page.ts';

/** HTML-escapes text for element content and quoted attributes. */
export function esc(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const CSS = `
*{box-sizing:border-box}
body{margin:0;font:17px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2937;background:#f3f4f6}
main{max-width:34rem;margin:0 auto;padding:1rem;background:#fff;min-height:100vh}
h1{font-size:1.5rem;margin:.5rem 0 1rem}h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
a{color:#1d4ed8}
.banner{background:#fef3c7;color:#78350f;border:2px solid #b45309;padding:.5rem .75rem;font-weight:700;margin-bottom:1rem}
.due{font-size:2rem;font-weight:700;margin:0}
table{width:100%;border-collapse:collapse;margin:.5rem 0}th,td{text-align:left;padding:.4rem .25rem;border-bottom:1px solid #d1d5db}
td.amt,th.amt{text-align:right}
form{margin:0 0 1rem}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
.hint{display:block;font-weight:400;color:#4b5563;font-size:.95rem}
input[type=text],input[type=tel],textarea{width:100%;font:inherit;padding:.6rem;border:2px solid #6b7280;border-radius:.375rem;color:#111827;background:#fff}
fieldset{border:1px solid #d1d5db;border-radius:.375rem;margin:0 0 .75rem;padding:.5rem .75rem}
legend{font-weight:600;padding:0 .25rem}
.choice{display:flex;gap:.5rem;align-items:flex-start;font-weight:400;margin:.4rem 0}
.choice input{width:1.25rem;height:1.25rem;margin-top:.2rem}
button,.button{display:block;width:100%;font:inherit;font-weight:700;padding:.75rem 1rem;margin:.5rem 0;border:2px solid #1d4ed8;border-radius:.375rem;
 background:#1d4ed8;color:#fff;text-align:center;text-decoration:none;cursor:pointer}
button.secondary,.button.secondary{background:#fff;color:#1d4ed8}
button.danger{background:#fff;color:#991b1b;border-color:#991b1b}
:focus-visible{outline:3px solid #b45309;outline-offset:3px}
.error{color:#991b1b;font-weight:600;margin:.25rem 0}
.notice{background:#eff6ff;border-left:4px solid #1d4ed8;padding:.5rem .75rem}
footer{margin-top:2rem;color:#4b5563;font-size:.95rem}
`;

/** Words of the pages around the pay-page model (which has its own). */
export const PAGE_TEXT = {
  en: {
    invalidTitle: 'This link is invalid or has expired',
    invalidBody: 'Please use the newest link we sent you, or call the office that sent it.',
    verifyTitle: 'Confirm it’s you',
    verifyIntro: 'To keep your bill private, enter your date of birth or your ZIP code.',
    birthDate: 'Date of birth',
    birthDateHint: 'MM/DD/YYYY',
    or: 'or',
    zip: 'ZIP code',
    zipHint: '5 digits',
    continue: 'Continue',
    mismatch: (left: number) => `That doesn’t match what we have on file. ${left} ${left === 1 ? 'try' : 'tries'} left.`,
    invalidAnswer: 'Enter your date of birth as MM/DD/YYYY, or a 5-digit ZIP code.',
    unavailable: 'We can’t check that one. Please try the other.',
    lockedTitle: 'Too many tries',
    lockedBody: 'For your privacy this link is locked for 24 hours. Please call the office that sent it.',
    statementLines: 'Your visits',
    date: 'Date',
    service: 'Service',
    amount: 'Amount',
    partAmount: 'Amount to pay',
    partHint: (min: string, max: string) => `Between ${min} and ${max}`,
    payThis: 'Pay this amount',
    choosePlan: 'Choose a plan',
    startPlan: 'Start plan and pay the first payment',
    noInterest: 'No interest, no fees.',
    other: 'Other options',
    note: 'Anything you would like us to know (optional)',
    noteHint: 'Please don’t include medical details.',
    partErrors: {
      'not-an-amount': 'Enter an amount like 25.00.',
      'below-minimum': 'That is below the smallest payment accepted.',
      'above-amount-due': 'That is more than the amount due; choose “Pay in full”.',
      'not-offered': 'Paying part is not offered for this bill.',
    } as Record<string, string>,
    planError: 'Choose one of the plans shown.',
    assistanceTitle: 'We received your request for financial assistance',
    disputeTitle: 'We received your question about this bill',
    heldBody: 'Your bill is on hold while our staff review it: you will not get reminders in the meantime. We will contact you.',
    completeTitle: 'Thank you: your payment was received',
    processingTitle: 'Thank you: your payment is being processed',
    completeBody: 'You can close this page. A receipt is on its way if we have your email address.',
    cancelledTitle: 'Payment not completed',
    cancelledBody: 'Nothing was charged.',
    backToBill: 'Back to your bill',
    sessionEnded: 'Your session has ended. Please confirm it’s you again.',
    sandboxTitle: 'Sandbox checkout',
    sandboxBanner: 'Sandbox — no real payment',
    sandboxBody: 'This practice has not connected Stripe yet. Nothing is charged: choose what the card does.',
    sandboxPay: 'Pay',
    sandboxDecline: 'Decline',
    declined: 'Your card was declined. Nothing was charged.',
    language: 'Español',
  },
  es: {
    invalidTitle: 'Este enlace no es válido o ha vencido',
    invalidBody: 'Use el enlace más reciente que le enviamos o llame a la oficina que lo envió.',
    verifyTitle: 'Confirme que es usted',
    verifyIntro: 'Para proteger su privacidad, escriba su fecha de nacimiento o su código postal.',
    birthDate: 'Fecha de nacimiento',
    birthDateHint: 'MM/DD/AAAA',
    or: 'o',
    zip: 'Código postal',
    zipHint: '5 dígitos',
    continue: 'Continuar',
    mismatch: (left: number) => `No coincide con nuestros registros. Le ${left === 1 ? 'queda' : 'quedan'} ${left} ${left === 1 ? 'intento' : 'intentos'}.`,
    invalidAnswer: 'Escriba su fecha de nacimiento como MM/DD/AAAA, o un código postal de 5 dígitos.',
    unavailable: 'No podemos verificar ese dato. Intente con el otro.',
    lockedTitle: 'Demasiados intentos',
    lockedBody: 'Para proteger su privacidad, este enlace está bloqueado por 24 horas. Llame a la oficina que lo envió.',
    statementLines: 'Sus visitas',
    date: 'Fecha',
    service: 'Servicio',
    amount: 'Importe',
    partAmount: 'Monto a pagar',
    partHint: (min: string, max: string) => `Entre ${min} y ${max}`,
    payThis: 'Pagar este monto',
    choosePlan: 'Elija un plan',
    startPlan: 'Iniciar el plan y hacer el primer pago',
    noInterest: 'Sin intereses ni cargos.',
    other: 'Otras opciones',
    note: 'Algo que quiera decirnos (opcional)',
    noteHint: 'Por favor no incluya detalles médicos.',
    partErrors: {
      'not-an-amount': 'Escriba un monto como 25.00.',
      'below-minimum': 'Es menos que el pago mínimo aceptado.',
      'above-amount-due': 'Es más que el monto a pagar; elija “Pagar el total”.',
      'not-offered': 'No se ofrece pagar una parte de esta factura.',
    } as Record<string, string>,
    planError: 'Elija uno de los planes.',
    assistanceTitle: 'Recibimos su solicitud de asistencia financiera',
    disputeTitle: 'Recibimos su consulta sobre esta factura',
    heldBody: 'Su factura queda en espera mientras nuestro personal la revisa: no recibirá recordatorios mientras tanto. Nos comunicaremos con usted.',
    completeTitle: 'Gracias: recibimos su pago',
    processingTitle: 'Gracias: su pago se está procesando',
    completeBody: 'Puede cerrar esta página. Si tenemos su correo electrónico, le enviaremos un recibo.',
    cancelledTitle: 'El pago no se completó',
    cancelledBody: 'No se cobró nada.',
    backToBill: 'Volver a su factura',
    sessionEnded: 'Su sesión terminó. Confirme de nuevo que es usted.',
    sandboxTitle: 'Pago de prueba',
    sandboxBanner: 'Modo de prueba — ningún pago real',
    sandboxBody: 'Esta práctica aún no conectó Stripe. No se cobra nada: elija qué hace la tarjeta.',
    sandboxPay: 'Pagar',
    sandboxDecline: 'Rechazar',
    declined: 'Su tarjeta fue rechazada. No se cobró nada.',
    language: 'English',
  },
} as const;

/** The whole page around a body. */
export function layout(locale: PayPageLocale, title: string, body: string, options: { sandbox?: boolean; footer?: string } = {}): string {
  const banner = options.sandbox ? `<p class="banner" role="note">${esc(PAGE_TEXT[locale].sandboxBanner)}</p>` : '';
  return `<!doctype html>
<html lang="${locale}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<meta name="referrer" content="no-referrer">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main id="main">
${banner}<h1>${esc(title)}</h1>
${body}
${options.footer ? `<footer>${options.footer}</footer>` : ''}
</main>
</body>
</html>
`;
}

const hidden = (name: string, value: string) => `<input type="hidden" name="${esc(name)}" value="${esc(value)}">`;

/** "This link is invalid or has expired": the same page for every reason a link is refused. */
export function invalidLinkPage(locale: PayPageLocale): string {
  const t = PAGE_TEXT[locale];
  return layout(locale, t.invalidTitle, `<p>${esc(t.invalidBody)}</p>`);
}

/** The identity check form. `error` is shown above the fields and tied to them. */
export function identityPage(locale: PayPageLocale, options: { action: string; csrf: string; error?: string; switchLanguage: string }): string {
  const t = PAGE_TEXT[locale];
  const body = `<p>${esc(t.verifyIntro)}</p>
${options.error ? `<p class="error" id="verify-error" role="alert">${esc(options.error)}</p>` : ''}
<form method="post" action="${esc(options.action)}" novalidate>
${hidden('csrf', options.csrf)}${hidden('lang', locale)}
<label for="birthDate">${esc(t.birthDate)} <span class="hint" id="birthDate-hint">${esc(t.birthDateHint)}</span></label>
<input type="text" id="birthDate" name="birthDate" inputmode="numeric" autocomplete="bday" aria-describedby="birthDate-hint${options.error ? ' verify-error' : ''}"${options.error ? ' aria-invalid="true"' : ''}>
<p>${esc(t.or)}</p>
<label for="zip">${esc(t.zip)} <span class="hint" id="zip-hint">${esc(t.zipHint)}</span></label>
<input type="text" id="zip" name="zip" inputmode="numeric" autocomplete="postal-code" maxlength="10" aria-describedby="zip-hint">
<button type="submit">${esc(t.continue)}</button>
</form>
<p><a href="${esc(options.switchLanguage)}" lang="${locale === 'en' ? 'es' : 'en'}">${esc(t.language)}</a></p>`;
  return layout(locale, t.verifyTitle, body);
}

/** The link is locked after too many wrong answers. */
export function lockedPage(locale: PayPageLocale): string {
  const t = PAGE_TEXT[locale];
  return layout(locale, t.lockedTitle, `<p role="alert">${esc(t.lockedBody)}</p>`);
}

/** Where the pay page's forms go. */
export interface PayPageActions {
  readonly pay: string;
  readonly assistance: string;
  readonly dispute: string;
  readonly statement: string;
  readonly switchLanguage: string;
}

function practiceFooter(model: PayPageModel): string {
  const phone = model.practice.phone;
  return `${esc(model.practice.name)}${phone ? ` · ${esc(model.text.questions)} <a href="tel:${esc(phone.replace(/[^+\d]/g, ''))}">${esc(phone)}</a>` : ''}`;
}

/** The verified pay page: amount due, visits, and every choice the model offers. */
export function payPage(model: PayPageModel, options: { actions: PayPageActions; csrf: string; error?: { field: 'part' | 'plan'; message: string } }): string {
  const t = model.text, p = PAGE_TEXT[model.locale], a = options.actions;
  const form = (action: string, inner: string) => `<form method="post" action="${esc(action)}">${hidden('csrf', options.csrf)}${hidden('lang', model.locale)}${inner}</form>`;
  const parts: string[] = [];
  parts.push(`<p>${esc(model.practice.name)}</p><h2 id="due-label">${esc(t.amountDue)}</h2><p class="due" aria-labelledby="due-label">${esc(model.amountDue)}</p>`);
  if (model.lines.length > 0) {
    parts.push(`<h2>${esc(p.statementLines)}</h2><table><thead><tr><th scope="col">${esc(p.date)}</th><th scope="col">${esc(p.service)}</th><th scope="col" class="amt">${esc(p.amount)}</th></tr></thead><tbody>
${model.lines.map((l) => `<tr><td>${esc(l.date)}</td><td>${esc(l.label)}</td><td class="amt">${esc(l.amount)}</td></tr>`).join('\n')}
</tbody></table>`);
  }
  const { choices } = model;
  if (choices.payInFull) parts.push(form(a.pay, `${hidden('choice', 'full')}<button type="submit">${esc(t.payInFull)} (${esc(model.amountDue)})</button>`));
  if (choices.payPart) {
    const err = options.error?.field === 'part' ? options.error.message : undefined;
    const show = (cents: number) => displayMoney(money(cents, model.currency), model.locale === 'es' ? 'es-US' : 'en-US');
    parts.push(`<h2>${esc(t.payPart)}</h2>${form(a.pay, `${hidden('choice', 'part')}
<label for="amount">${esc(p.partAmount)} <span class="hint" id="amount-hint">${esc(p.partHint(show(choices.payPart.minCents), show(choices.payPart.maxCents)))}</span></label>
${err ? `<p class="error" id="amount-error" role="alert">${esc(err)}</p>` : ''}
<input type="text" id="amount" name="amount" inputmode="decimal" autocomplete="off" aria-describedby="amount-hint${err ? ' amount-error' : ''}"${err ? ' aria-invalid="true"' : ''}>
<button type="submit" class="secondary">${esc(p.payThis)}</button>`)}`);
  }
  if (choices.plans.length > 0) {
    const err = options.error?.field === 'plan' ? options.error.message : undefined;
    parts.push(`<h2>${esc(t.plan)}</h2>${form(a.pay, `${hidden('choice', 'plan')}
<fieldset${err ? ' aria-describedby="plan-error"' : ''}><legend>${esc(p.choosePlan)}</legend>
${err ? `<p class="error" id="plan-error" role="alert">${esc(err)}</p>` : ''}
${choices.plans.map((plan, i) => `<label class="choice"><input type="radio" name="months" value="${plan.months}"${i === 0 ? ' checked' : ''}> <span>${esc(plan.text)}</span></label>`).join('\n')}
<p class="hint">${esc(p.noInterest)}</p></fieldset>
<button type="submit" class="secondary">${esc(p.startPlan)}</button>`)}`);
  }
  if (model.state !== 'open') parts.push(`<p class="notice" role="status">${esc(model.state === 'in-plan' ? t.inPlan : t.onHold)}</p>`);
  parts.push(`<h2>${esc(p.other)}</h2>`);
  if (choices.statementPdf) parts.push(`<p><a class="button secondary" href="${esc(a.statement)}">${esc(t.statement)}</a></p>`);
  const noteField = (id: string) => `<label for="${id}">${esc(p.note)} <span class="hint">${esc(p.noteHint)}</span></label><textarea id="${id}" name="note" rows="3" maxlength="500"></textarea>`;
  if (choices.financialAssistance) parts.push(form(a.assistance, `${noteField('assistance-note')}<button type="submit" class="secondary">${esc(t.assistance)}</button>`));
  if (choices.dispute) parts.push(form(a.dispute, `${noteField('dispute-note')}<button type="submit" class="danger">${esc(t.dispute)}</button>`));
  parts.push(`<p><a href="${esc(a.switchLanguage)}" lang="${model.locale === 'en' ? 'es' : 'en'}">${esc(p.language)}</a></p>`);
  return layout(model.locale, t.title, parts.join('\n'), { sandbox: model.sandbox, footer: practiceFooter(model) });
}

/** After "financial assistance" or "question this bill": the request is recorded and the bill on hold. */
export function heldPage(locale: PayPageLocale, kind: 'assistance' | 'dispute', practice: { name: string; phone: string | null }): string {
  const t = PAGE_TEXT[locale];
  const body = `<p role="status">${esc(t.heldBody)}</p>`;
  return layout(locale, kind === 'assistance' ? t.assistanceTitle : t.disputeTitle, body, { footer: `${esc(practice.name)}${practice.phone ? ` · ${esc(practice.phone)}` : ''}` });
}

/** Stripe (or the sandbox) sent the patient back after paying. */
export function completePage(locale: PayPageLocale, paid: boolean, practice: { name: string; phone: string | null }, sandbox: boolean): string {
  const t = PAGE_TEXT[locale];
  return layout(locale, paid ? t.completeTitle : t.processingTitle, `<p role="status">${esc(t.completeBody)}</p>`, { sandbox, footer: esc(practice.name) });
}

/** The patient left checkout without paying. */
export function cancelledPage(locale: PayPageLocale, back: string | undefined): string {
  const t = PAGE_TEXT[locale];
  return layout(locale, t.cancelledTitle, `<p>${esc(t.cancelledBody)}</p>${back ? `<p><a class="button" href="${esc(back)}">${esc(t.backToBill)}</a></p>` : ''}`);
}

/** The sandbox's stand-in for Stripe Checkout. */
export function sandboxCheckoutPage(locale: PayPageLocale, options: { amount: string; action: string; csrf: string; declined?: boolean }): string {
  const t = PAGE_TEXT[locale];
  const body = `<p>${esc(t.sandboxBody)}</p>
<p class="due">${esc(options.amount)}</p>
${options.declined ? `<p class="error" role="alert">${esc(t.declined)}</p>` : ''}
<form method="post" action="${esc(options.action)}">${hidden('csrf', options.csrf)}${hidden('lang', locale)}
<button type="submit" name="outcome" value="succeeded">${esc(t.sandboxPay)} ${esc(options.amount)}</button>
<button type="submit" name="outcome" value="card_declined" class="danger">${esc(t.sandboxDecline)}</button>
</form>`;
  return layout(locale, `${t.sandboxTitle}: ${t.sandboxBanner}`, body, { sandbox: true });
}
