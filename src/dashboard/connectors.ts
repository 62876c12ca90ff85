/**
 * Connectors: each connector's status (last run, last success, last error, checkpoints, record counts, open
 * quarantine) from the API's `GET /connectors`, and the HL7 message store (counts by status, search with paging)
 * from `GET /hl7/messages`. Message content is not shown (the API's audited `GET /hl7/messages/{id}` is for that).
 */
import { Hl7MessageRepository } from '../store/hl7-messages.ts';
import { callRoute, type PageContext, type PageResult } from './context.ts';
import { formatDateTime, html, pager, table, withQuery, words } from './html.ts';

interface Run { status: string; startedAt: Date; finishedAt: Date | null; stored: number; quarantined: number; error: string | null }
interface ConnectorStatus {
  name: string; transport: string; description: string; baseUrl?: string;
  lastRun: Run | null; lastSuccess: Run | null; lastError: Run | null;
  checkpoints: { resourceType: string; position: string; updatedAt: Date }[];
  records: { resourceType: string; total: number; pending: number; ingested: number; quarantined: number }[];
  openQuarantine: number;
}
interface MessageSummary { id: string; connector: string; controlId: string; messageType: string; sendingApplication: string; receivedAt: Date; status: string; error: string | null; sizeChars: number }

const PAGE_SIZE = 25;
const TYPE = /^[A-Z][A-Z0-9]{2}(\^[A-Z0-9]{3})?$/;
const STATUSES = ['received', 'processed', 'failed'];

/** `GET /dashboard/connectors[?type=&status=&controlId=&cursor=]`. */
export async function connectorsPage(ctx: PageContext): Promise<PageResult> {
  const type = TYPE.test(ctx.query.type ?? '') ? ctx.query.type : undefined;
  const status = STATUSES.includes(ctx.query.status ?? '') ? ctx.query.status : undefined;
  const controlId = ctx.query.controlId && ctx.query.controlId.length <= 199 ? ctx.query.controlId : undefined;
  const cursor = ctx.query.cursor && ctx.query.cursor.length <= 200 ? ctx.query.cursor : undefined;
  const [connectors, counts] = await Promise.all([
    callRoute<ConnectorStatus[]>(ctx, 'get', '/connectors'),
    new Hl7MessageRepository(ctx.deps.db.pool).countByStatus(ctx.practice.id),
  ]);
  let messages: { items: MessageSummary[]; next?: string } = { items: [] };
  let searchProblem: string | undefined;
  try {
    messages = (await callRoute<typeof messages>(ctx, 'get', '/hl7/messages', {
      query: { limit: PAGE_SIZE, ...(type ? { type } : {}), ...(status ? { status } : {}), ...(controlId ? { controlId } : {}), ...(cursor ? { cursor } : {}) },
    })) ?? messages;
  } catch (error) {
    if ((error as { status?: number }).status !== 400) throw error;
    searchProblem = (error as Error).message;
  }
  const filters = { type, status, controlId };
  const body = html`<h1>Connectors</h1>
${table('Connectors', ['Connector', 'Transport', 'Last run', 'Last success', 'Last error', 'Records', 'Open quarantine'], (connectors ?? []).map((c) => [
  html`${c.name}<br><span class="muted">${c.description}</span>`,
  c.transport,
  c.lastRun ? html`${words(c.lastRun.status)}<br><span class="muted">${formatDateTime(c.lastRun.startedAt)}</span>` : 'never',
  c.lastSuccess ? formatDateTime(c.lastSuccess.finishedAt ?? c.lastSuccess.startedAt) : 'never',
  c.lastError ? html`${formatDateTime(c.lastError.startedAt)}<br><span class="muted">${c.lastError.error ?? ''}</span>` : 'none',
  c.records.length ? c.records.map((r) => html`<div>${r.resourceType}: ${r.total} (${r.pending} pending, ${r.quarantined} quarantined)</div>`) : '—',
  c.openQuarantine ? html`<a href="/dashboard/worklist#quarantine">${c.openQuarantine}</a>` : '0',
]), 'No connector is configured for this practice.')}
<h2>HL7 message store</h2>
<ul class="figures">${STATUSES.map((s) => html`<li><span class="label">${words(s)}</span><span class="value">${counts[s as 'received']}</span></li>`)}</ul>
<form class="filters" method="get" action="/dashboard/connectors">
<div><label for="type">Type</label><input id="type" name="type" value="${type ?? ''}" placeholder="DFT^P03" size="9"></div>
<div><label for="hl7status">Status</label><select id="hl7status" name="status"><option value="">Any</option>${STATUSES.map((s) => html`<option value="${s}"${s === status ? html` selected` : ''}>${s}</option>`)}</select></div>
<div><label for="controlId">Control id (MSH-10)</label><input id="controlId" name="controlId" value="${controlId ?? ''}" size="14"></div>
<button type="submit" class="secondary">Search</button>
</form>
${searchProblem ? html`<p class="notice error" role="alert">${searchProblem}</p>` : ''}
${table('Messages, newest first', ['Control id', 'Type', 'Connector', 'Sender', 'Received', 'Status', 'Size'], messages.items.map((m) => [
  m.controlId, m.messageType, m.connector, m.sendingApplication, formatDateTime(m.receivedAt),
  html`${m.status}${m.error ? html`<br><span class="muted">${m.error}</span>` : ''}`, `${m.sizeChars} chars`,
]), 'No messages match.')}
${pager('Messages', {
  ...(cursor ? { first: withQuery('/dashboard/connectors', filters) } : {}),
  ...(messages.next ? { next: withQuery('/dashboard/connectors', { ...filters, cursor: messages.next }) } : {}),
})}`;
  return { title: 'Connectors', active: 'connectors', body };
}
