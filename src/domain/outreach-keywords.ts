/**
 * Inbound text keywords: what a patient's reply means, and what Settle answers.
 *
 * Rule (documented in the README, "Outreach rules"):
 * - The text is split into words (letters and digits; case, punctuation and emoji ignored).
 * - Any opt-out word anywhere — STOP, END, CANCEL, UNSUBSCRIBE, QUIT, REVOKE, OPTOUT, or "OPT OUT" — opts the
 *   number out, even after a negation: "don't stop" is treated as STOP. Texting someone who meant to stop is
 *   the costly mistake (TCPA: revocation "by any reasonable means"); the confirmation tells them to reply START
 *   if they did not mean it. A word only matches whole: "stopped by", "weekend", "cancellation" do not opt out.
 * - Otherwise START or UNSTOP opts back in; HELP (or INFO) gets the practice's contact; PAY sends the pay
 *   link again. Spanish replies are understood when they are the whole message: ALTO, PARAR, DETENER,
 *   CANCELAR, BAJA (opt out), AYUDA (help), PAGAR / PAGO (pay), INICIAR / COMENZAR (opt back in).
 * - Replies are written in GSM-7 (Spanish without á/í/ó/ú) so each fits one 160-character segment.
 * - Precedence: opt-out, opt-in, help, pay; anything else is `other` (forwarded to staff, no auto-reply).
 */
import type { Language } from './outreach.ts';

export type KeywordIntent = 'opt-out' | 'opt-in' | 'help' | 'pay' | 'other';

/** The meaning of an inbound text. */
export interface KeywordClassification {
  intent: KeywordIntent;
  /** The word that decided it, upper case (`STOP`, `OPT OUT`); absent for `other`. */
  keyword?: string;
}

export const OPT_OUT_KEYWORDS = ['STOP', 'END', 'CANCEL', 'UNSUBSCRIBE', 'QUIT', 'REVOKE', 'OPTOUT', 'STOPALL'] as const;
export const OPT_IN_KEYWORDS = ['START', 'UNSTOP'] as const;
export const HELP_KEYWORDS = ['HELP', 'INFO'] as const;
export const PAY_KEYWORDS = ['PAY'] as const;

const SPANISH_WHOLE: Record<string, KeywordIntent> = {
  ALTO: 'opt-out', PARAR: 'opt-out', DETENER: 'opt-out', CANCELAR: 'opt-out', BAJA: 'opt-out',
  AYUDA: 'help', PAGAR: 'pay', PAGO: 'pay', INICIAR: 'opt-in', COMENZAR: 'opt-in',
};

/** Splits a text into upper-case words, accents removed. */
export function keywordWords(text: string): string[] {
  return (text.normalize('NFD').replace(/\p{M}/gu, '').toUpperCase().match(/[\p{L}\p{N}]+/gu) ?? []);
}

/** Classifies an inbound text by the rule above. */
export function classifyInbound(text: string): KeywordClassification {
  const words = keywordWords(text);
  const has = (list: readonly string[]) => words.find((w) => list.includes(w));
  const optOut = has(OPT_OUT_KEYWORDS);
  if (optOut !== undefined) return { intent: 'opt-out', keyword: optOut };
  for (let i = 0; i + 1 < words.length; i++) {
    if (words[i] === 'OPT' && words[i + 1] === 'OUT') return { intent: 'opt-out', keyword: 'OPT OUT' };
  }
  if (words.length === 1 && SPANISH_WHOLE[words[0]!] !== undefined) return { intent: SPANISH_WHOLE[words[0]!]!, keyword: words[0]! };
  const optIn = has(OPT_IN_KEYWORDS);
  if (optIn !== undefined) return { intent: 'opt-in', keyword: optIn };
  const help = has(HELP_KEYWORDS);
  if (help !== undefined) return { intent: 'help', keyword: help };
  const pay = has(PAY_KEYWORDS);
  if (pay !== undefined) return { intent: 'pay', keyword: pay };
  return { intent: 'other' };
}

/** What the automatic replies may mention. */
export interface KeywordReplyContext {
  practiceName: string;
  /** The practice's billing phone, for HELP. */
  practicePhone: string | null;
  /** A fresh pay link for PAY; null when the number has nothing open to pay. */
  payLink?: string | null;
}

const REPLIES: Record<Language, Record<Exclude<KeywordIntent, 'other'> | 'pay-none', (c: KeywordReplyContext) => string>> = {
  en: {
    'opt-out': (c) => `${c.practiceName}: You are unsubscribed and will get no more texts from us. Reply START to resubscribe.`,
    'opt-in': (c) => `${c.practiceName}: You are resubscribed to billing texts. Reply STOP to opt out, HELP for help.`,
    help: (c) => `${c.practiceName} billing${c.practicePhone ? `: call ${c.practicePhone}` : ''}. Msg&data rates may apply. Reply PAY for your pay link, STOP to opt out.`,
    pay: (c) => `${c.practiceName}: Pay your balance here: ${c.payLink ?? ''} Reply STOP to opt out.`,
    'pay-none': (c) => `${c.practiceName}: You have no balance due right now. Thank you!`,
  },
  es: {
    'opt-out': (c) => `${c.practiceName}: Listo, ya no le enviaremos mensajes de texto. Responda START para volver a recibirlos.`,
    'opt-in': (c) => `${c.practiceName}: Le enviaremos de nuevo mensajes sobre su saldo. Responda STOP para cancelar.`,
    help: (c) => `${c.practiceName}, cobros${c.practicePhone ? `: llame al ${c.practicePhone}` : ''}. Pueden aplicar tarifas de mensajes y datos. Responda PAY para pagar, STOP para cancelar.`,
    pay: (c) => `${c.practiceName}: Pague su saldo en ${c.payLink ?? ''} Responda STOP para cancelar.`,
    'pay-none': (c) => `${c.practiceName}: No tiene saldo pendiente. ¡Gracias!`,
  },
};

/**
 * The one automatic reply to a classified text, or null for `other`. For opt-out this is the single
 * confirmation carriers expect; after it, nothing more is sent to the number until it opts back in.
 */
export function keywordReply(intent: KeywordIntent, language: Language, context: KeywordReplyContext): string | null {
  if (intent === 'other') return null;
  const replies = REPLIES[language];
  if (intent === 'pay' && (context.payLink === undefined || context.payLink === null)) return replies['pay-none'](context);
  return replies[intent](context);
}
