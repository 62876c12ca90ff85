/**
 * Message templates for texts, emails and letters, in English and Spanish.
 *
 * Minimum necessary, enforced: a template may use only the fields in {@link TEMPLATE_FIELDS} — practice name
 * and phone, patient first name, amount due, due date, pay link, statement date. A template naming anything
 * else (`{{diagnosis}}`, `{{procedure}}`, `{{patient.dob}}`…) fails when it is loaded, with the template's name
 * and the field, so a clinical detail can never reach a text by a typo or a well-meant edit.
 *
 * Syntax: `{{field}}` (spaces inside the braces allowed). Nothing else is special; a `{{` that does not open a
 * valid placeholder is a load error. Values are inserted once (never re-parsed) and escaped for the output:
 * control characters and line breaks become spaces in texts, emails and letters; the HTML part of an email
 * escapes `& < > " '`. Texts are GSM-7: an SMS template's own words must be GSM-7 (checked at load) and values
 * are folded to GSM-7 (`María` → `Maria`), so every text has a known segment count, reported on rendering.
 *
 * Amounts are formatted exactly from integer cents, in both languages as US bills print them: `$1,234.56`
 * (Spanish-speaking patients in the US see dollar amounts written the US way, as `es-US` does).
 * Dates: `Mar 8, 2026` (en), `8 mar 2026` (es).
 */
import { DateTime } from 'luxon';
import { LANGUAGES, type Language, type MessageChannel } from '../domain/outreach.ts';
import type { Policy } from '../domain/policy.ts';

/** The only fields a template may use. */
export const TEMPLATE_FIELDS = ['practiceName', 'practicePhone', 'firstName', 'amountDue', 'dueDate', 'payLink', 'statementDate'] as const;
export type TemplateField = (typeof TEMPLATE_FIELDS)[number];

/** A template as written. */
export interface TemplateSource {
  /** The name policy steps refer to (`statement-ready`). */
  name: string;
  channel: MessageChannel;
  language: Language;
  /** Email subject, or a letter's heading. Required for email and letter, not allowed for texts. */
  subject?: string;
  /** The text; for an email the plain-text part (the HTML part is derived from it). */
  body: string;
}

type Part = { text: string } | { field: TemplateField };

/** A template that passed the load checks. */
export interface Template extends TemplateSource {
  /** The fields it uses, in order of first use. */
  fields: TemplateField[];
  readonly compiledSubject: Part[] | null;
  readonly compiledBody: Part[];
}

/** A template that cannot be loaded or rendered; names the template (and the field, when one is at fault). */
export class TemplateError extends Error {
  readonly template: string;
  readonly field: string | undefined;
  constructor(template: string, message: string, field?: string) {
    super(`template "${template}": ${message}`);
    this.name = 'TemplateError';
    this.template = template;
    this.field = field;
  }
}

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/y;

function compileText(source: TemplateSource, text: string): Part[] {
  const parts: Part[] = [];
  let literal = '';
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('{{', i)) {
      PLACEHOLDER.lastIndex = i;
      const match = PLACEHOLDER.exec(text);
      if (match === null) throw new TemplateError(source.name, `(${source.channel}, ${source.language}) has a "{{" at offset ${i} that does not open a {{field}} placeholder`);
      const field = match[1]!;
      if (!(TEMPLATE_FIELDS as readonly string[]).includes(field)) {
        throw new TemplateError(
          source.name,
          `(${source.channel}, ${source.language}) uses field "${field}", which is not allowed: templates may use only ${TEMPLATE_FIELDS.join(', ')} (minimum necessary: no diagnosis, procedure, code, specialty or other patient detail)`,
          field,
        );
      }
      if (literal !== '') parts.push({ text: literal });
      literal = '';
      parts.push({ field: field as TemplateField });
      i = PLACEHOLDER.lastIndex;
    } else {
      literal += text[i];
      i++;
    }
  }
  if (literal !== '') parts.push({ text: literal });
  return parts;
}

/**
 * Checks and compiles one template.
 * @throws TemplateError naming the template and the offending field or text.
 */
export function compileTemplate(source: TemplateSource): Template {
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(source.name)) throw new TemplateError(source.name, 'the name must be lower-case letters, digits and hyphens');
  if (!(LANGUAGES as readonly string[]).includes(source.language)) throw new TemplateError(source.name, `unknown language "${source.language}"`);
  if (source.body.trim() === '') throw new TemplateError(source.name, `(${source.channel}, ${source.language}) has an empty body`);
  if (source.channel === 'sms' && source.subject !== undefined) throw new TemplateError(source.name, '(sms) a text has no subject');
  if (source.channel !== 'sms' && (source.subject === undefined || source.subject.trim() === '')) {
    throw new TemplateError(source.name, `(${source.channel}, ${source.language}) needs a subject`);
  }
  const compiledSubject = source.subject === undefined ? null : compileText(source, source.subject);
  const compiledBody = compileText(source, source.body);
  if (source.channel === 'sms') {
    const literal = compiledBody.map((p) => ('text' in p ? p.text : '')).join('');
    const bad = [...literal].find((ch) => !isGsmChar(ch));
    if (bad !== undefined) {
      throw new TemplateError(source.name, `(sms, ${source.language}) contains "${bad}", which is not GSM-7 and would make every text UCS-2 (70 characters a segment)`);
    }
  }
  const fields: TemplateField[] = [];
  for (const part of [...(compiledSubject ?? []), ...compiledBody]) if ('field' in part && !fields.includes(part.field)) fields.push(part.field);
  return { ...source, fields, compiledSubject, compiledBody };
}

/** Loaded templates, looked up by name, channel and language. */
export interface TemplateCatalogue {
  get(name: string, channel: MessageChannel, language: Language): Template | undefined;
  all(): Template[];
}

/**
 * Loads a set of templates, checking every one.
 * @throws TemplateError for the first template that fails (the message names it and the field), or for two
 *   templates with the same name, channel and language.
 */
export function loadTemplates(sources: readonly TemplateSource[]): TemplateCatalogue {
  const byKey = new Map<string, Template>();
  for (const source of sources) {
    const template = compileTemplate(source);
    const key = `${source.name}\u0000${source.channel}\u0000${source.language}`;
    if (byKey.has(key)) throw new TemplateError(source.name, `(${source.channel}, ${source.language}) is defined twice`);
    byKey.set(key, template);
  }
  return {
    get: (name, channel, language) => byKey.get(`${name}\u0000${channel}\u0000${language}`),
    all: () => [...byKey.values()],
  };
}

/**
 * The template for a step's channel in the patient's language, falling back to English.
 * @returns undefined when neither exists.
 */
export function selectTemplate(catalogue: TemplateCatalogue, name: string, channel: MessageChannel, language: Language): Template | undefined {
  return catalogue.get(name, channel, language) ?? catalogue.get(name, channel, 'en');
}

/** Every (step, channel, language) of a policy that has no template of its own; English fallbacks are not counted as present. */
export function policyTemplateProblems(policy: Policy, catalogue: TemplateCatalogue, languages: readonly Language[] = LANGUAGES): string[] {
  const problems: string[] = [];
  for (const step of policy.steps) {
    for (const channel of step.channels) {
      if (channel === 'agency') continue;
      for (const language of languages) {
        if (catalogue.get(step.template, channel, language) === undefined) {
          problems.push(`policy "${policy.name}" step "${step.id}": no ${language} ${channel} template "${step.template}"`);
        }
      }
    }
  }
  return problems;
}

/* ---------------------------------------------------------------- values and formatting */

/** The data a message may carry (exactly the allow-listed fields, before formatting). */
export interface MessageValues {
  practiceName: string;
  practicePhone?: string | null;
  /** Falls back to "there" (en) or nothing (es) when unknown. */
  firstName?: string | null;
  amountDueCents: number;
  /** ISO 4217, default USD. */
  currency?: string;
  /** `YYYY-MM-DD`. */
  dueDate?: string | null;
  /** An absolute http(s) URL (a signed pay link). */
  payLink?: string | null;
  /** `YYYY-MM-DD`. */
  statementDate?: string | null;
}

/**
 * Formats integer minor units exactly (no floating point): `123456` → `$1,234.56` in both languages
 * (see the module comment); other currencies as `EUR 1,234.56` with that currency's minor digits.
 */
export function formatAmount(cents: number, _language: Language, currency = 'USD'): string {
  if (!Number.isSafeInteger(cents)) throw new RangeError(`${cents} is not a whole number of minor units`);
  const digits = minorDigits(currency);
  const negative = cents < 0;
  const text = String(Math.abs(cents)).padStart(digits + 1, '0');
  const whole = text.slice(0, text.length - digits).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const number = digits === 0 ? whole : `${whole}.${text.slice(text.length - digits)}`;
  return `${negative ? '-' : ''}${currency === 'USD' ? `$${number}` : `${currency} ${number}`}`;
}

// Building an Intl.NumberFormat costs more than the rest of a text: remember each currency's minor digits.
const MINOR_DIGITS = new Map<string, number>();
function minorDigits(currency: string): number {
  let digits = MINOR_DIGITS.get(currency);
  if (digits === undefined) {
    digits = new Intl.NumberFormat('en-US', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2;
    if (MINOR_DIGITS.size < 200) MINOR_DIGITS.set(currency, digits);
  }
  return digits;
}

/** Formats a `YYYY-MM-DD` date: `Mar 8, 2026` (en), `8 mar 2026` (es). */
export function formatDate(isoDate: string, language: Language): string {
  const key = `${isoDate} ${language}`;
  let text = FORMATTED_DATES.get(key);
  if (text === undefined) {
    const date = DateTime.fromISO(isoDate, { zone: 'UTC' });
    if (!date.isValid) throw new RangeError(`"${isoDate}" is not a YYYY-MM-DD date`);
    text = date.setLocale(language === 'es' ? 'es-US' : 'en-US').toLocaleString(DateTime.DATE_MED);
    if (FORMATTED_DATES.size >= 10_000) FORMATTED_DATES.clear();
    FORMATTED_DATES.set(key, text);
  }
  return text;
}

// Planning renders the same few hundred statement and due dates thousands of times; Intl formatting is costly.
const FORMATTED_DATES = new Map<string, string>();

/* ---------------------------------------------------------------- GSM-7 */

const GSM_BASIC = new Set([
  ...'@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà',
]);
const GSM_EXTENDED = new Set([...'^{}\\[~]|€\f']);

/** Whether a character can be sent in the GSM 03.38 7-bit alphabet (basic or extension table). */
export function isGsmChar(ch: string): boolean {
  return GSM_BASIC.has(ch) || GSM_EXTENDED.has(ch);
}

/** How a text would travel: its encoding, length in that encoding's units, and SMS segments. */
export interface SmsEncoding {
  encoding: 'GSM-7' | 'UCS-2';
  /** Septets for GSM-7 (extension characters count two), UTF-16 code units for UCS-2. */
  units: number;
  segments: number;
}

/** The encoding and segment count of a text (160/153 septets, or 70/67 UCS-2 units, per segment). */
export function smsEncoding(text: string): SmsEncoding {
  const chars = [...text];
  if (chars.every(isGsmChar)) {
    const units = chars.reduce((n, ch) => n + (GSM_EXTENDED.has(ch) ? 2 : 1), 0);
    return { encoding: 'GSM-7', units, segments: units <= 160 ? 1 : Math.ceil(units / 153) };
  }
  const units = text.length;
  return { encoding: 'UCS-2', units, segments: units <= 70 ? 1 : Math.ceil(units / 67) };
}

const FOLD: Record<string, string> = { '‘': "'", '’': "'", '“': '"', '”': '"', '–': '-', '—': '-', '…': '...', '\u00a0': ' ' };

/** Replaces characters outside GSM-7 with their closest GSM-7 spelling (`í` → `i`, `’` → `'`), else `?`. */
export function foldToGsm(text: string): string {
  return [...text]
    .map((ch) => {
      if (isGsmChar(ch)) return ch;
      if (FOLD[ch] !== undefined) return FOLD[ch];
      const stripped = ch.normalize('NFD').replace(/\p{M}/gu, '');
      return stripped !== '' && [...stripped].every(isGsmChar) ? stripped : '?';
    })
    .join('');
}

/* ---------------------------------------------------------------- rendering */

/** A rendered message. */
export interface RenderedMessage {
  template: string;
  channel: MessageChannel;
  /** The language actually used (English when the patient's had no template). */
  language: Language;
  subject?: string;
  text: string;
  /** Email only: the HTML part, with every value escaped and the pay link as a link. */
  html?: string;
  /** Texts only. */
  sms?: SmsEncoding;
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
/** Values are one line: control characters (line breaks included) become spaces, runs of spaces one. */
const oneLine = (s: string) => s.replace(/[\p{Cc}\u2028\u2029]/gu, ' ').replace(/\s+/g, ' ').trim();

function fieldValue(template: Template, field: TemplateField, values: MessageValues): string {
  const missing = (): never => {
    throw new TemplateError(template.name, `(${template.channel}, ${template.language}) needs a value for "${field}"`, field);
  };
  const language = template.language;
  switch (field) {
    case 'practiceName':
      return oneLine(values.practiceName) || missing();
    case 'practicePhone':
      return oneLine(values.practicePhone ?? '') || missing();
    case 'firstName':
      return oneLine(values.firstName ?? '') || (language === 'es' ? '' : 'there');
    case 'amountDue':
      return formatAmount(values.amountDueCents, language, values.currency);
    case 'dueDate':
      return formatDate(values.dueDate ?? missing(), language);
    case 'statementDate':
      return formatDate(values.statementDate ?? missing(), language);
    case 'payLink': {
      const link = oneLine(values.payLink ?? '') || missing();
      if (!/^https?:\/\/[^\s<>"']+$/i.test(link)) throw new TemplateError(template.name, 'payLink must be an absolute http(s) URL', field);
      return link;
    }
  }
}

function fill(template: Template, parts: Part[], values: MessageValues, mode: 'text' | 'sms' | 'html'): string {
  let out = '';
  for (const part of parts) {
    if ('text' in part) {
      out += mode === 'html' ? escapeHtml(part.text) : part.text;
      continue;
    }
    const value = fieldValue(template, part.field, values);
    if (mode === 'sms') out += foldToGsm(value);
    else if (mode === 'html') out += part.field === 'payLink' ? `<a href="${escapeHtml(value)}">${escapeHtml(value)}</a>` : escapeHtml(value);
    else out += value;
  }
  // An empty value ("Hola {{firstName}}," with no first name) leaves no stray space before punctuation.
  return out.replace(/ +([,.!?])/g, '$1').replace(/ {2,}/g, ' ');
}

/**
 * Renders a template with a message's values.
 * @throws TemplateError when a field the template uses has no value, or the pay link is not an http(s) URL.
 */
export function renderMessage(template: Template, values: MessageValues): RenderedMessage {
  const base = { template: template.name, channel: template.channel, language: template.language };
  if (template.channel === 'sms') {
    const text = fill(template, template.compiledBody, values, 'sms').trim();
    return { ...base, text, sms: smsEncoding(text) };
  }
  const subject = oneLine(fill(template, template.compiledSubject ?? [], values, 'text'));
  const text = fill(template, template.compiledBody, values, 'text').trim();
  if (template.channel === 'letter') return { ...base, subject, text };
  const html = fill(template, template.compiledBody, values, 'html')
    .trim()
    .split(/\n{2,}/)
    .map((paragraph) => `<p>${paragraph.replace(/\n/g, '<br>')}</p>`)
    .join('\n');
  return { ...base, subject, text, html };
}

/** Values for previews: a realistic practice, patient first name, amount and a pay link of real length (32-character token). */
export const SAMPLE_VALUES: Readonly<Required<MessageValues>> = {
  practiceName: 'Riverside Family Medicine',
  practicePhone: '(555) 010-0199',
  firstName: 'Maria',
  amountDueCents: 123456,
  currency: 'USD',
  dueDate: '2026-12-18',
  payLink: 'https://pay.rfm.org/p/AQx7Hq2xK9mZbR4tLw8nYc3vPd6sJe1f',
  statementDate: '2026-11-18',
};

/**
 * A preview of a template (the API's template preview): rendered with the sample values, overridden by any given.
 * @returns undefined when the catalogue has no such template in English either.
 */
export function previewTemplate(
  catalogue: TemplateCatalogue, name: string, channel: MessageChannel, language: Language, values: Partial<MessageValues> = {},
): RenderedMessage | undefined {
  const template = selectTemplate(catalogue, name, channel, language);
  return template === undefined ? undefined : renderMessage(template, { ...SAMPLE_VALUES, ...values });
}

/* ---------------------------------------------------------------- the default templates */

// Texts must fit one 160-character GSM-7 segment with a 25-character practice name, an 11-letter first name, a
// $12,345.67 amount and a 62-character pay link (`https://pay.example-clinic.com/p/<32>`): every word counts.
const STOP_EN = 'Reply STOP to end';
const STOP_ES = 'STOP para salir';

/** Settle's own templates for every step of the default policy and every message channel, in English and Spanish. */
export const DEFAULT_TEMPLATE_SOURCES: readonly TemplateSource[] = [
  // statement-ready
  { name: 'statement-ready', channel: 'sms', language: 'en', body: `{{practiceName}}: Hi {{firstName}}, your bill of {{amountDue}} is ready: {{payLink}} ${STOP_EN}` },
  { name: 'statement-ready', channel: 'sms', language: 'es', body: `{{practiceName}}: Hola {{firstName}}, su saldo de {{amountDue}}: {{payLink}} ${STOP_ES}` },
  {
    name: 'statement-ready', channel: 'email', language: 'en', subject: 'Your statement from {{practiceName}} is ready',
    body: 'Hi {{firstName}},\n\nYour statement from {{practiceName}} dated {{statementDate}} is ready. The amount due is {{amountDue}}.\n\nYou can pay securely online: {{payLink}}\n\nQuestions about your bill? Call us at {{practicePhone}}.\n\nThank you,\n{{practiceName}}',
  },
  {
    name: 'statement-ready', channel: 'email', language: 'es', subject: 'Su estado de cuenta de {{practiceName}} está listo',
    body: 'Hola {{firstName}}:\n\nSu estado de cuenta de {{practiceName}} con fecha {{statementDate}} está listo. El saldo a pagar es {{amountDue}}.\n\nPuede pagar en línea de forma segura: {{payLink}}\n\n¿Preguntas sobre su factura? Llámenos al {{practicePhone}}.\n\nGracias,\n{{practiceName}}',
  },
  {
    name: 'statement-ready', channel: 'letter', language: 'en', subject: 'Your statement',
    body: 'Dear {{firstName}},\n\nThis is your statement from {{practiceName}} dated {{statementDate}}. The amount due is {{amountDue}}.\n\nPay online at {{payLink}} or scan the QR code. Questions? Call {{practicePhone}}.',
  },
  {
    name: 'statement-ready', channel: 'letter', language: 'es', subject: 'Su estado de cuenta',
    body: 'Estimado/a {{firstName}}:\n\nEste es su estado de cuenta de {{practiceName}} con fecha {{statementDate}}. El saldo a pagar es {{amountDue}}.\n\nPague en línea en {{payLink}} o escanee el código QR. ¿Preguntas? Llame al {{practicePhone}}.',
  },
  // friendly-reminder
  { name: 'friendly-reminder', channel: 'sms', language: 'en', body: `{{practiceName}}: Hi {{firstName}}, {{amountDue}} is due {{dueDate}}: {{payLink}} ${STOP_EN}` },
  { name: 'friendly-reminder', channel: 'sms', language: 'es', body: `{{practiceName}}: Hola {{firstName}}, recuerde su saldo de {{amountDue}}: {{payLink}} ${STOP_ES}` },
  {
    name: 'friendly-reminder', channel: 'email', language: 'en', subject: 'A reminder from {{practiceName}}',
    body: 'Hi {{firstName}},\n\nA friendly reminder that your balance of {{amountDue}} with {{practiceName}} is due {{dueDate}}.\n\nPay securely online: {{payLink}}\n\nIf you have already paid, thank you, and please ignore this message. Questions? Call {{practicePhone}}.\n\n{{practiceName}}',
  },
  {
    name: 'friendly-reminder', channel: 'email', language: 'es', subject: 'Un recordatorio de {{practiceName}}',
    body: 'Hola {{firstName}}:\n\nLe recordamos que su saldo de {{amountDue}} con {{practiceName}} vence el {{dueDate}}.\n\nPague en línea de forma segura: {{payLink}}\n\nSi ya pagó, gracias; puede ignorar este mensaje. ¿Preguntas? Llame al {{practicePhone}}.\n\n{{practiceName}}',
  },
  {
    name: 'friendly-reminder', channel: 'letter', language: 'en', subject: 'Payment reminder',
    body: 'Dear {{firstName}},\n\nThis is a friendly reminder that your balance of {{amountDue}} with {{practiceName}} is due {{dueDate}}.\n\nPay online at {{payLink}}. Questions? Call {{practicePhone}}.',
  },
  {
    name: 'friendly-reminder', channel: 'letter', language: 'es', subject: 'Recordatorio de pago',
    body: 'Estimado/a {{firstName}}:\n\nLe recordamos que su saldo de {{amountDue}} con {{practiceName}} vence el {{dueDate}}.\n\nPague en línea en {{payLink}}. ¿Preguntas? Llame al {{practicePhone}}.',
  },
  // statement-letter
  { name: 'statement-letter', channel: 'sms', language: 'en', body: `{{practiceName}}: Hi {{firstName}}, we mailed a bill for {{amountDue}}: {{payLink}} ${STOP_EN}` },
  { name: 'statement-letter', channel: 'sms', language: 'es', body: `{{practiceName}}: Hola {{firstName}}, enviamos su cuenta de {{amountDue}}: {{payLink}} ${STOP_ES}` },
  {
    name: 'statement-letter', channel: 'email', language: 'en', subject: 'Your statement from {{practiceName}}',
    body: 'Hi {{firstName}},\n\nWe have mailed you a statement dated {{statementDate}} for {{amountDue}}.\n\nPay securely online: {{payLink}}\n\nQuestions? Call {{practicePhone}}.\n\n{{practiceName}}',
  },
  {
    name: 'statement-letter', channel: 'email', language: 'es', subject: 'Su estado de cuenta de {{practiceName}}',
    body: 'Hola {{firstName}}:\n\nLe enviamos por correo un estado de cuenta con fecha {{statementDate}} por {{amountDue}}.\n\nPague en línea de forma segura: {{payLink}}\n\n¿Preguntas? Llame al {{practicePhone}}.\n\n{{practiceName}}',
  },
  {
    name: 'statement-letter', channel: 'letter', language: 'en', subject: 'Statement',
    body: 'Dear {{firstName}},\n\nPlease find your statement from {{practiceName}} dated {{statementDate}}. The amount due is {{amountDue}}, payable by {{dueDate}}.\n\nPay online at {{payLink}}, scan the QR code, or return the stub below with your check. Questions? Call {{practicePhone}}.',
  },
  {
    name: 'statement-letter', channel: 'letter', language: 'es', subject: 'Estado de cuenta',
    body: 'Estimado/a {{firstName}}:\n\nAdjuntamos su estado de cuenta de {{practiceName}} con fecha {{statementDate}}. El saldo a pagar es {{amountDue}}, con vencimiento el {{dueDate}}.\n\nPague en línea en {{payLink}}, escanee el código QR o devuelva el talón de abajo con su cheque. ¿Preguntas? Llame al {{practicePhone}}.',
  },
  // second-notice
  { name: 'second-notice', channel: 'sms', language: 'en', body: `{{practiceName}}: Hi {{firstName}}, {{amountDue}} is past due: {{payLink}} ${STOP_EN}` },
  { name: 'second-notice', channel: 'sms', language: 'es', body: `{{practiceName}}: Hola {{firstName}}, saldo vencido de {{amountDue}}: {{payLink}} ${STOP_ES}` },
  {
    name: 'second-notice', channel: 'email', language: 'en', subject: 'Second notice: your balance with {{practiceName}}',
    body: 'Hi {{firstName}},\n\nOur records show a past-due balance of {{amountDue}} from your statement of {{statementDate}}.\n\nPlease pay online at {{payLink}}, or call {{practicePhone}} to set up a payment plan.\n\n{{practiceName}}',
  },
  {
    name: 'second-notice', channel: 'email', language: 'es', subject: 'Segundo aviso: su saldo con {{practiceName}}',
    body: 'Hola {{firstName}}:\n\nNuestros registros muestran un saldo vencido de {{amountDue}} de su estado de cuenta del {{statementDate}}.\n\nPague en línea en {{payLink}} o llame al {{practicePhone}} para un plan de pagos.\n\n{{practiceName}}',
  },
  {
    name: 'second-notice', channel: 'letter', language: 'en', subject: 'Second notice',
    body: 'Dear {{firstName}},\n\nOur records show a past-due balance of {{amountDue}} from your statement of {{statementDate}}.\n\nPlease pay by {{dueDate}} online at {{payLink}}, or call {{practicePhone}} to arrange a payment plan. If you have already paid, thank you.',
  },
  {
    name: 'second-notice', channel: 'letter', language: 'es', subject: 'Segundo aviso',
    body: 'Estimado/a {{firstName}}:\n\nNuestros registros muestran un saldo vencido de {{amountDue}} de su estado de cuenta del {{statementDate}}.\n\nPague antes del {{dueDate}} en línea en {{payLink}} o llame al {{practicePhone}} para un plan de pagos. Si ya pagó, gracias.',
  },
  // final-notice
  { name: 'final-notice', channel: 'sms', language: 'en', body: `{{practiceName}} FINAL NOTICE: {{amountDue}} due by {{dueDate}}: {{payLink}} ${STOP_EN}` },
  { name: 'final-notice', channel: 'sms', language: 'es', body: `{{practiceName}} AVISO FINAL: pague {{amountDue}} antes del {{dueDate}}: {{payLink}} ${STOP_ES}` },
  {
    name: 'final-notice', channel: 'email', language: 'en', subject: 'Final notice from {{practiceName}}',
    body: 'Hi {{firstName}},\n\nThis is a final notice: your balance of {{amountDue}} is past due. Please pay by {{dueDate}} at {{payLink}}, or call {{practicePhone}} to arrange a payment plan or ask about financial assistance.\n\nIf the balance is not paid or arranged by then, the account may be referred to a collection agency.\n\n{{practiceName}}',
  },
  {
    name: 'final-notice', channel: 'email', language: 'es', subject: 'Aviso final de {{practiceName}}',
    body: 'Hola {{firstName}}:\n\nEste es un aviso final: su saldo de {{amountDue}} está vencido. Pague antes del {{dueDate}} en {{payLink}}, o llame al {{practicePhone}} para un plan de pagos o para pedir asistencia financiera.\n\nSi para entonces el saldo no se ha pagado ni acordado, la cuenta podría enviarse a una agencia de cobranza.\n\n{{practiceName}}',
  },
  {
    name: 'final-notice', channel: 'letter', language: 'en', subject: 'Final notice',
    body: 'Dear {{firstName}},\n\nYour balance of {{amountDue}} from your statement of {{statementDate}} is past due. Please pay by {{dueDate}} online at {{payLink}}, or call {{practicePhone}} to arrange a payment plan or to apply for financial assistance.\n\nIf the balance is not paid or arranged by {{dueDate}}, the account may be referred to a collection agency.',
  },
  {
    name: 'final-notice', channel: 'letter', language: 'es', subject: 'Aviso final',
    body: 'Estimado/a {{firstName}}:\n\nSu saldo de {{amountDue}} de su estado de cuenta del {{statementDate}} está vencido. Pague antes del {{dueDate}} en línea en {{payLink}}, o llame al {{practicePhone}} para un plan de pagos o para solicitar asistencia financiera.\n\nSi el saldo no se paga ni se acuerda antes del {{dueDate}}, la cuenta podría enviarse a una agencia de cobranza.',
  },
];

/** The default templates, loaded (and so checked) when this module is imported. */
export const defaultTemplates: TemplateCatalogue = loadTemplates(DEFAULT_TEMPLATE_SOURCES);
