/**
 * The public unsubscribe page behind every email's footer link and `List-Unsubscribe` header (no API key: the
 * signed token is the authority).
 *
 * - `GET /u/{token}` shows a confirmation page (English or Spanish, from the email's language; `?lang=` switches)
 *   and changes nothing, so mail scanners that follow links never unsubscribe anyone.
 * - `POST /u/{token}` (the page's button, and RFC 8058 one-click POSTs from mail providers with
 *   `List-Unsubscribe=One-Click`) records an email opt-out for the address the email went to, by blind index,
 *   with source `email:unsubscribe`. Repeating it changes nothing. Planning's opt-out guard then suppresses every
 *   later email to that address.
 *
 * A token that is malformed, forged or names no outbox row gets a 404 page that says the link is not valid.
 */
import type { Clock } from '../domain/clock.ts';
import type { Language } from '../domain/outreach.ts';
import type { AnyRoute, RouteContext } from '../api/routes.ts';
import { AuditLog } from '../store/audit.ts';
import { withTransaction, type Database } from '../store/database.ts';
import { OutreachRepository } from '../store/outreach.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import { unsubscribeKey, verifyUnsubscribeToken } from './unsubscribe-token.ts';

/** What the unsubscribe routes need. */
export interface UnsubscribeRouteDependencies {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
}

/** The opt-out source an unsubscribe records. */
export const UNSUBSCRIBE_SOURCE = 'email:unsubscribe';

const PAGE_TEXT = {
  en: {
    title: 'Unsubscribe',
    ask: (p: string) => `Stop billing emails from ${p}?`,
    explain: 'You will no longer receive emails about your bill. You may still receive a statement by mail.',
    button: 'Unsubscribe',
    done: 'You are unsubscribed',
    doneText: (p: string) => `${p} will not email you about your bill again. If this was a mistake, call the office.`,
    invalid: 'This link is not valid',
    invalidText: 'The unsubscribe link is incomplete or has expired. Copy the whole link from the email, or call the office.',
    other: { lang: 'es', label: 'Español' },
  },
  es: {
    title: 'Cancelar suscripción',
    ask: (p: string) => `¿Dejar de recibir correos de facturación de ${p}?`,
    explain: 'Ya no recibirá correos sobre su factura. Es posible que siga recibiendo un estado de cuenta por correo postal.',
    button: 'Cancelar suscripción',
    done: 'Su suscripción fue cancelada',
    doneText: (p: string) => `${p} no le volverá a enviar correos sobre su factura. Si fue un error, llame a la oficina.`,
    invalid: 'Este enlace no es válido',
    invalidText: 'El enlace para cancelar la suscripción está incompleto o venció. Copie el enlace completo del correo o llame a la oficina.',
    other: { lang: 'en', label: 'English' },
  },
} as const;

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function page(language: Language, title: string, content: string): string {
  return `<!doctype html>
<html lang="${language}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem; color: #1b1b1b; line-height: 1.5; }
h1 { font-size: 1.5rem; }
button { font-size: 1rem; padding: .75rem 1.5rem; border: 0; border-radius: .375rem; background: #0b3d91; color: #fff; cursor: pointer; }
button:focus { outline: 3px solid #f2a900; outline-offset: 2px; }
a { color: #0b3d91; }
</style>
</head>
<body>
<main>
${content}
</main>
</body>
</html>
`;
}

interface Target {
  outboxId: string;
  practiceId: string;
  practiceName: string;
  address: string;
  language: Language;
}

async function findTarget(deps: UnsubscribeRouteDependencies, token: string): Promise<Target | undefined> {
  const verified = verifyUnsubscribeToken(unsubscribeKey(deps.cipher), token);
  if (!verified) return undefined;
  const { rows } = await deps.db.pool.query<{ practice_id: string; channel: string; recipient_enc: string; language: Language }>(
    'SELECT practice_id, channel, recipient_enc, language FROM outbox WHERE id = $1',
    [verified.outboxId],
  );
  const row = rows[0];
  if (!row || row.channel !== 'email') return undefined;
  const practice = await new PracticeRepository(deps.db.pool).findById(row.practice_id);
  return {
    outboxId: verified.outboxId,
    practiceId: row.practice_id,
    practiceName: practice?.name ?? '',
    address: deps.cipher.decrypt(row.recipient_enc, 'outbox.recipient'),
    language: row.language,
  };
}

function languageOf(ctx: RouteContext<unknown, { lang?: Language }>, target: Target | undefined): Language {
  return ctx.query.lang ?? target?.language ?? 'en';
}

function sendPage(ctx: RouteContext<unknown, { lang?: Language }>, status: number, html: string): undefined {
  ctx.res.status(status).type('text/html; charset=utf-8').set('Cache-Control', 'no-store').set('Referrer-Policy', 'no-referrer').send(html);
  return undefined;
}

function invalidPage(ctx: RouteContext<unknown, { lang?: Language }>): undefined {
  const t = PAGE_TEXT[languageOf(ctx, undefined)];
  return sendPage(ctx, 404, page(languageOf(ctx, undefined), t.invalid, `<h1>${t.invalid}</h1>\n<p>${t.invalidText}</p>`));
}

/**
 * Records an email opt-out for an address unless one is already in force, with an audit event (actor
 * `patient:unsubscribe-link`, the outbox row the link came from; never the address).
 * @returns true when a new opt-out was recorded.
 */
export async function recordEmailOptOut(deps: UnsubscribeRouteDependencies, practiceId: string, address: string, outboxId: string | null, source = UNSUBSCRIBE_SOURCE): Promise<boolean> {
  return withTransaction(deps.db, async (tx) => {
    const store = new OutreachRepository(tx, deps.cipher, deps.clock);
    // One unsubscribe of an address at a time, so a double click records one opt-out.
    await tx.query("SELECT pg_advisory_xact_lock(hashtext('settle.unsubscribe:' || $1))", [practiceId]);
    const { optOuts } = await store.contactRules(practiceId, { email: address });
    if (optOuts.some((o) => o.channel === 'email' && o.optedBackInAt === undefined)) return false;
    const optOutId = await store.recordOptOut(practiceId, { channel: 'email', address, source, at: deps.clock.now() });
    await new AuditLog(deps.db, deps.clock).append({
      practiceId, actor: 'patient:unsubscribe-link', action: 'optout.create', entityType: 'opt_out', entityId: optOutId, detail: { channel: 'email', source, outboxId },
    }, tx);
    return true;
  });
}

const QUERY = { type: 'object', properties: { lang: { type: 'string', enum: ['en', 'es'] } } };
const HTML_RESPONSES = {
  200: { description: 'An HTML page (English or Spanish).', contentType: 'text/html' },
  404: { description: 'An HTML page saying the link is not valid.', contentType: 'text/html' },
};

/** `GET` and `POST /u/{token}`: the unsubscribe page and the opt-out it records. */
export function unsubscribeRoutes(deps: UnsubscribeRouteDependencies): AnyRoute[] {
  return [
    {
      method: 'get',
      path: '/u/{token}',
      summary: 'The unsubscribe confirmation page of an email (changes nothing)',
      tag: 'outreach',
      access: 'public',
      query: QUERY,
      responses: HTML_RESPONSES,
      async handler(ctx: RouteContext<unknown, { lang?: Language }>) {
        const target = await findTarget(deps, ctx.params.token ?? '');
        if (!target) return invalidPage(ctx);
        const language = languageOf(ctx, target);
        const t = PAGE_TEXT[language];
        const name = escapeHtml(target.practiceName);
        return sendPage(ctx, 200, page(language, t.title, [
          `<h1>${t.ask(name)}</h1>`,
          `<p>${t.explain}</p>`,
          `<form method="post" action="?lang=${language}"><button type="submit">${t.button}</button></form>`,
          `<p><a href="?lang=${t.other.lang}" lang="${t.other.lang}">${t.other.label}</a></p>`,
        ].join('\n')));
      },
    },
    {
      method: 'post',
      path: '/u/{token}',
      summary: 'Unsubscribes the address an email went to (also the RFC 8058 one-click POST)',
      tag: 'outreach',
      access: 'public',
      query: QUERY,
      responses: HTML_RESPONSES,
      async handler(ctx: RouteContext<unknown, { lang?: Language }>) {
        const target = await findTarget(deps, ctx.params.token ?? '');
        if (!target) return invalidPage(ctx);
        await recordEmailOptOut(deps, target.practiceId, target.address, target.outboxId);
        const language = languageOf(ctx, target);
        const t = PAGE_TEXT[language];
        return sendPage(ctx, 200, page(language, t.done, `<h1>${t.done}</h1>\n<p>${t.doneText(escapeHtml(target.practiceName))}</p>`));
      },
    },
  ];
}
