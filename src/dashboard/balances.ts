/**
 * Balances: the list (filtered, paged, no names) and one balance in detail: who owes it (name, contact masked),
 * ledger entries, status history, the outreach timeline with every suppression and its reason, messages in the
 * outbox, payments with their write-backs, and the payment plan. The detail shows PHI: each view is audited.
 */
import { AGING_BUCKETS, BALANCE_STATUSES } from '../domain/ledger.ts';
import type { MessageChannel } from '../domain/outreach.ts';
import { maskRecipient } from '../outreach/routes.ts';
import { AuditLog } from '../store/audit.ts';
import { LedgerRepository } from '../store/ledger.ts';
import { PaymentRepository, type Payment, type WritebackRow } from '../store/payments.ts';
import { PlanRepository } from '../store/plans.ts';
import { callRoute, DashboardNotFound, param, UUID, type PageContext, type PageResult } from './context.ts';
import { formatDateTime, html, pager, showMoney, table, withQuery, words, type Html } from './html.ts';

const PAGE_SIZE = 25;

interface ShownMoney { amountMinor: number; currency: string; value: string }
interface ShownBalance {
  id: string; guarantorId: string; accountId: string; patientAmount: ShownMoney; insuranceAmount: ShownMoney; status: string;
  holdReason: string | null; oldestOpenDate: string | null; agingBucket: string | null; outreachEligible: boolean; statusChangedAt: Date;
}
interface ShownEntry {
  seq: number; kind: string; amount: ShownMoney; effectMinor: number; serviceDate: string; payer: string; serviceCode: string | null;
  description: string | null; source: { connector: string; resourceType: string; sourceId: string; versionId: string }; reversesEntryId: string | null; postedAt: Date;
}
interface BalanceDetail extends ShownBalance {
  entries: ShownEntry[];
  statusHistory: { fromStatus: string | null; toStatus: string; holdReason: string | null; actor: string; note: string | null; occurredAt: Date }[];
}
interface TimelineEvent { stepId: string; channel: string; at: Date; status: string; rule: string | null; reason: string | null; finalNotice: boolean }
interface OutboxItem { id: string; channel: MessageChannel; recipient: string; subject: string | null; body: string; template: string; createdAt: Date }

/** `GET /dashboard/balances[?status=&agingBucket=&cursor=]`: the API's `GET /balances`, as a table. */
export async function balancesPage(ctx: PageContext): Promise<PageResult> {
  const status = (BALANCE_STATUSES as readonly string[]).includes(ctx.query.status ?? '') ? ctx.query.status : undefined;
  const agingBucket = (AGING_BUCKETS as readonly string[]).includes(ctx.query.agingBucket ?? '') ? ctx.query.agingBucket : undefined;
  const cursor = ctx.query.cursor && UUID.test(ctx.query.cursor) ? ctx.query.cursor : undefined;
  const page = (await callRoute<{ balances: ShownBalance[]; nextCursor: string | null }>(ctx, 'get', '/balances', {
    query: { limit: PAGE_SIZE, ...(status ? { status } : {}), ...(agingBucket ? { agingBucket } : {}), ...(cursor ? { cursor } : {}) },
  }))!;
  const filters = { status, agingBucket };
  const body = html`<h1>Balances</h1>
<form class="filters" method="get" action="/dashboard/balances">
<div><label for="status">Status</label><select id="status" name="status"><option value="">Any</option>${BALANCE_STATUSES.map((s) => html`<option value="${s}"${s === status ? html` selected` : ''}>${words(s)}</option>`)}</select></div>
<div><label for="agingBucket">Age (days)</label><select id="agingBucket" name="agingBucket"><option value="">Any</option>${AGING_BUCKETS.map((b) => html`<option value="${b}"${b === agingBucket ? html` selected` : ''}>${b}</option>`)}</select></div>
<button type="submit" class="secondary">Filter</button>
</form>
${table('Balances', ['Balance', 'Patient owes', 'Insurance', 'Status', 'Age', 'Oldest open charge'], page.balances.map((b) => [
  html`<a href="/dashboard/balances/${b.id}">${b.id.slice(0, 8)}</a>`,
  showMoney(b.patientAmount),
  showMoney(b.insuranceAmount),
  html`${words(b.status)}${b.holdReason ? html` <span class="muted">(${words(b.holdReason)})</span>` : ''}`,
  b.agingBucket ?? '—',
  b.oldestOpenDate ?? '—',
]), 'No balances match.')}
${pager('Balances', {
  ...(cursor ? { first: withQuery('/dashboard/balances', filters) } : {}),
  ...(page.nextCursor ? { next: withQuery('/dashboard/balances', { ...filters, cursor: page.nextCursor }) } : {}),
})}`;
  return { title: 'Balances', active: 'balances', body };
}

function personName(name: { text?: string; given?: string[]; family?: string } | undefined): string {
  if (!name) return 'not on file';
  return name.text ?? ([...(name.given ?? []), name.family ?? ''].join(' ').trim() || 'not on file');
}

/** `GET /dashboard/balances/{id}`: audited as `balance.view`. */
export async function balanceDetailPage(ctx: PageContext): Promise<PageResult> {
  const id = param(ctx, 'id');
  const detail = UUID.test(id)
    ? await callRoute<BalanceDetail>(ctx, 'get', '/balances/{id}', { params: { id } }).catch((error: unknown) => {
      if ((error as { status?: number }).status === 404) return undefined;
      throw error;
    })
    : undefined;
  if (!detail) throw new DashboardNotFound(`No balance ${id} in this practice.`);
  const ledger = new LedgerRepository(ctx.deps.db.pool, ctx.deps.cipher, ctx.deps.clock);
  const payments = new PaymentRepository(ctx.deps.db.pool, ctx.deps.clock);
  const [contact, timeline, outbox, paymentList, plans] = await Promise.all([
    ledger.getGuarantorContact(detail.guarantorId),
    callRoute<{ events: TimelineEvent[] }>(ctx, 'get', '/balances/{id}/timeline', { params: { id } }),
    callRoute<{ messages: OutboxItem[] }>(ctx, 'get', '/outbox', { query: { limit: 20, offset: 0, balanceId: id } }),
    paymentsOfBalance(ctx, id, payments),
    new PlanRepository(ctx.deps.db.pool, ctx.deps.clock).forGuarantor(ctx.practice.id, detail.guarantorId).then((all) => all.filter((p) => p.balanceIds.includes(id))),
  ]);
  const writebacks = new Map<string, WritebackRow[]>();
  for (const p of paymentList) writebacks.set(p.id, await payments.writebacks(ctx.practice.id, p.id));
  await new AuditLog(ctx.deps.db, ctx.deps.clock).append({
    practiceId: ctx.practice.id, actor: ctx.actor, action: 'balance.view', entityType: 'balance', entityId: id, detail: { via: 'dashboard' },
  });

  const phone = contact?.phones?.[0];
  const facts: [string, Html | string][] = [
    ['Guarantor', personName(contact?.name)],
    ['Text / phone', phone ? maskRecipient('sms', phone)! : 'not on file'],
    ['Email', contact?.email ? maskRecipient('email', contact.email)! : 'not on file'],
    ['Patient owes', showMoney(detail.patientAmount)],
    ['Insurance expected', showMoney(detail.insuranceAmount)],
    ['Status', `${words(detail.status)}${detail.holdReason ? ` (${words(detail.holdReason)})` : ''}`],
    ['Age', detail.agingBucket ? `${detail.agingBucket} days (oldest open charge ${detail.oldestOpenDate})` : '—'],
    ['Outreach', detail.outreachEligible ? 'eligible' : 'not eligible (status, amount or small-balance threshold)'],
  ];
  const plan = plans[0];
  const body = html`<h1>Balance ${id.slice(0, 8)}</h1>
<p><a href="/dashboard/balances">← All balances</a></p>
${table('Summary', ['Item', 'Detail'], facts.map(([k, v]) => [k, v]))}
<h2 id="timeline">Outreach timeline</h2>
${timeline === undefined ? html`<p class="muted">Outreach is not part of this deployment.</p>` : table('Outreach attempts, oldest first', ['When', 'Step', 'Channel', 'Status', 'Rule', 'Reason'], timeline.events.map((e) => [
  formatDateTime(e.at), html`${e.stepId}${e.finalNotice ? ' (final notice)' : ''}`, e.channel, words(e.status), e.rule ?? '—', e.reason ?? '—',
]), 'No outreach yet.')}
${outbox === undefined ? '' : table('Messages in the outbox (recipients masked)', ['Written', 'Channel', 'To', 'Template', 'Message'], outbox.messages.map((m) => [
  formatDateTime(m.createdAt), m.channel, m.recipient, m.template, html`${m.subject ? html`<strong>${m.subject}</strong><br>` : ''}${m.body}`,
]), 'No messages.')}
<h2>Ledger</h2>
${table('Entries, oldest first', ['#', 'Service date', 'Kind', 'Payer', 'Amount', 'Effect', 'Code', 'Source'], detail.entries.map((e) => [
  String(e.seq), e.serviceDate, html`${e.kind}${e.reversesEntryId ? ' (reversal)' : ''}`, e.payer, showMoney(e.amount),
  showMoney({ amountMinor: e.effectMinor, currency: e.amount.currency }), e.serviceCode ?? '—',
  `${e.source.connector} ${e.source.resourceType}/${e.source.sourceId} v${e.source.versionId}`,
]))}
${table('Status history', ['When', 'From', 'To', 'By', 'Note'], detail.statusHistory.map((h) => [
  formatDateTime(h.occurredAt), words(h.fromStatus), html`${words(h.toStatus)}${h.holdReason ? ` (${words(h.holdReason)})` : ''}`, h.actor, h.note ?? '—',
]))}
<h2>Payments and write-backs</h2>
${table('Payments', ['Payment', 'Amount', 'Status', 'Succeeded', 'Refunded', 'Write-backs'], paymentList.map((p) => [
  p.id.slice(0, 8), showMoney(p.amount), words(p.status), formatDateTime(p.succeededAt),
  p.refundedMinor ? showMoney({ amount: p.refundedMinor, currency: p.amount.currency }) : '—',
  (writebacks.get(p.id) ?? []).map((w) => html`<div>${w.kind} ${showMoney(w.amount)}: <strong>${w.status}</strong>${w.attempts ? ` after ${w.attempts} attempt(s)` : ''}${w.lastError ? html` <span class="muted">(${w.lastError})</span>` : ''}</div>`),
]), 'No payments yet.')}
<h2>Payment plan</h2>
${plan ? html`<p>${words(plan.status)}: ${showMoney({ amount: plan.totalMinor, currency: plan.currency })} over ${plan.months} month(s).</p>
${table('Installments', ['#', 'Due', 'Amount', 'Status', 'Attempts', 'Paid'], plan.installments.map((i) => [
  String(i.number), i.dueDate, showMoney({ amount: i.amountMinor, currency: plan.currency }), words(i.status), String(i.attempts), formatDateTime(i.paidAt),
]))}` : html`<p class="muted">No payment plan.</p>`}`;
  return { title: `Balance ${id.slice(0, 8)}`, active: 'balances', body };
}

async function paymentsOfBalance(ctx: PageContext, balanceId: string, payments: PaymentRepository): Promise<Payment[]> {
  const { rows } = await ctx.deps.db.pool.query<{ id: string }>(
    'SELECT id FROM payments WHERE practice_id = $1 AND $2::uuid = ANY(balance_ids) ORDER BY created_at DESC LIMIT 50',
    [ctx.practice.id, balanceId],
  );
  const out: Payment[] = [];
  for (const { id } of rows) {
    const payment = await payments.get(ctx.practice.id, id);
    if (payment) out.push(payment);
  }
  return out;
}
