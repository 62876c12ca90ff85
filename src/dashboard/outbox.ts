/**
 * The outbox: every message written while no Twilio, SMTP or print channel is configured (and, in a demo, every
 * message), newest first, recipients masked, from the API's `GET /outbox`. Message bodies carry first names:
 * each view is audited.
 */
import type { MessageChannel } from '../domain/outreach.ts';
import { AuditLog } from '../store/audit.ts';
import { callRoute, type PageContext, type PageResult } from './context.ts';
import { html, offsetPager, queryInt, table } from './html.ts';

interface OutboxItem { id: string; balanceId: string; channel: MessageChannel; recipient: string; subject: string | null; body: string; language: string; template: string; createdAt: Date }

const PAGE_SIZE = 25;

/** `GET /dashboard/outbox[?offset=]`: audited as `outbox.view`. */
export async function outboxPage(ctx: PageContext): Promise<PageResult> {
  const offset = queryInt(ctx.query.offset, 0, 0, 1_000_000);
  const page = await callRoute<{ messages: OutboxItem[]; nextOffset: number | null }>(ctx, 'get', '/outbox', { query: { limit: PAGE_SIZE, offset } });
  if (page) {
    await new AuditLog(ctx.deps.db, ctx.deps.clock).append({
      practiceId: ctx.practice.id, actor: ctx.actor, action: 'outbox.view', entityType: 'outbox', detail: { via: 'dashboard', messages: page.messages.map((m) => m.id) },
    });
  }
  const body = html`<h1>Outbox</h1>
<p class="muted">Messages Settle wrote instead of sending, because no text, email or print service is configured. Recipients are masked.</p>
${page === undefined ? html`<p>Outreach is not part of this deployment.</p>` : html`${table('Messages, newest first', ['Written', 'Channel', 'To', 'Template', 'Language', 'Message', 'Balance'], page.messages.map((m) => [
  m.createdAt, m.channel, m.recipient, m.template, m.language,
  html`${m.subject ? html`<strong>${m.subject}</strong><br>` : ''}${m.body}`,
  html`<a href="/dashboard/balances/${m.balanceId}#timeline">${m.balanceId.slice(0, 8)}</a>`,
]), 'The outbox is empty.')}
${offsetPager('Outbox', '/dashboard/outbox', {}, offset, PAGE_SIZE, page.nextOffset !== null)}`}`;
  return { title: 'Outbox', active: 'outbox', body };
}
