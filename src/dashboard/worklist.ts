/**
 * The worklist: open staff tasks (disputes, assistance requests, undeliverable contacts, failed write-backs,
 * quarantined records), each with its action, and the open ingest quarantine with reprocess.
 *
 * Resolving a dispute lifts the hold on its balance (back to open, or paid when nothing is owed) and resolves the
 * task in one transaction, audited. Reprocessing calls the API's own `POST /quarantine/{id}/reprocess`.
 */
import { automaticStatus } from '../domain/ledger.ts';
import { AuditLog } from '../store/audit.ts';
import { withTransaction } from '../store/database.ts';
import { LedgerRepository } from '../store/ledger.ts';
import { QuarantineRepository } from '../store/quarantine.ts';
import { STAFF_TASK_KINDS, StaffTaskRepository, type StaffTask, type StaffTaskKind } from '../store/staff-tasks.ts';
import { callRoute, DashboardNotFound, hasRoute, param, UUID, type PageContext, type PageResult } from './context.ts';
import { formatDateTime, html, offsetPager, queryInt, showMoney, table, withQuery, words, type Html } from './html.ts';
import { csrfField } from './layout.ts';

const PAGE_SIZE = 25;
/** Deepest offset the worklist pages to (the task list is read from the top). */
const MAX_OFFSET = 5_000;

const KIND_LABELS: Record<StaffTaskKind, string> = {
  dispute: 'Dispute',
  assistance: 'Assistance request',
  undeliverable: 'Undeliverable contact',
  'writeback-failed': 'Failed write-back',
  quarantine: 'Quarantined record',
  other: 'Other',
};

function noteField(task: StaffTask): Html {
  return html`<label class="sr-only" for="note-${task.id}">Resolution note</label><input id="note-${task.id}" name="note" maxlength="500" placeholder="Resolution note">`;
}

function actionsFor(ctx: PageContext, task: StaffTask): Html {
  const resolveUrl = `/dashboard/worklist/${task.id}/resolve`;
  const form = (action: string, label: string, secondary = false) => html`<form class="inline" method="post" action="${resolveUrl}">${csrfField(ctx.csrf)}<input type="hidden" name="action" value="${action}">${noteField(task)}<button type="submit"${secondary ? html` class="secondary"` : ''}>${label}</button></form>`;
  if (task.kind === 'dispute' && task.balanceId) return html`${form('lift-hold', 'Lift hold and resolve')} ${form('resolve', 'Resolve, keep hold', true)}`;
  if (task.kind === 'quarantine' && task.subjectRef && UUID.test(task.subjectRef) && hasRoute(ctx, 'post', '/quarantine/{id}/reprocess')) {
    return html`<form class="inline" method="post" action="${`/dashboard/quarantine/${task.subjectRef}/reprocess`}">${csrfField(ctx.csrf)}<input type="hidden" name="task" value="${task.id}"><button type="submit">Reprocess</button></form> ${form('resolve', 'Dismiss', true)}`;
  }
  if (task.kind === 'writeback-failed' && task.subjectRef && hasRoute(ctx, 'post', '/writebacks/{id}/replay')) {
    return html`<form class="inline" method="post" action="${`/dashboard/writebacks/${task.subjectRef}/replay`}">${csrfField(ctx.csrf)}<input type="hidden" name="task" value="${task.id}"><button type="submit">Replay write-back</button></form> ${form('resolve', 'Dismiss', true)}`;
  }
  return form('resolve', 'Mark resolved');
}

/** `GET /dashboard/worklist[?kind=&offset=]`: open tasks; audited, since patients' own words may appear in notes. */
export async function worklistPage(ctx: PageContext): Promise<PageResult> {
  const kind = (STAFF_TASK_KINDS as readonly string[]).includes(ctx.query.kind ?? '') ? (ctx.query.kind as StaffTaskKind) : undefined;
  const offset = queryInt(ctx.query.offset, 0, 0, MAX_OFFSET);
  const tasks = new StaffTaskRepository(ctx.deps.db.pool, ctx.deps.clock);
  const listed = await tasks.list(ctx.practice.id, { status: 'open', ...(kind ? { kind } : {}), limit: PAGE_SIZE + 1, offset });
  const shown = listed.slice(0, PAGE_SIZE);
  const qOffset = queryInt(ctx.query.qoffset, 0, 0, MAX_OFFSET);
  const quarantine = await new QuarantineRepository(ctx.deps.db.pool, ctx.deps.clock).list(ctx.practice.id, { limit: PAGE_SIZE + 1, offset: qOffset });
  await new AuditLog(ctx.deps.db, ctx.deps.clock).append({
    practiceId: ctx.practice.id, actor: ctx.actor, action: 'worklist.view', entityType: 'staff_task',
    detail: { via: 'dashboard', tasks: shown.map((t) => t.id) },
  });
  const canReprocess = hasRoute(ctx, 'post', '/quarantine/{id}/reprocess');
  const body = html`<h1>Worklist</h1>
<form class="filters" method="get" action="/dashboard/worklist">
<div><label for="kind">Show</label><select id="kind" name="kind"><option value="">Every kind</option>${STAFF_TASK_KINDS.map((k) => html`<option value="${k}"${k === kind ? html` selected` : ''}>${KIND_LABELS[k]}</option>`)}</select></div>
<button type="submit" class="secondary">Filter</button>
</form>
${table(`Open tasks${kind ? ` (${KIND_LABELS[kind]})` : ''}`, ['Task', 'Opened', 'Balance', 'Note', 'Action'], shown.map((t) => [
  KIND_LABELS[t.kind],
  t.createdAt,
  t.balanceId ? html`<a href="/dashboard/balances/${t.balanceId}">Balance ${t.balanceId.slice(0, 8)}</a>` : '—',
  t.note ?? '—',
  actionsFor(ctx, t),
]), 'Nothing needs a person right now.')}
${offsetPager('Open tasks', '/dashboard/worklist', { kind }, offset, PAGE_SIZE, listed.length > PAGE_SIZE && offset + PAGE_SIZE <= MAX_OFFSET)}
${await failedWritebacks(ctx)}
<h2 id="quarantine">Quarantined records</h2>
<p class="muted">Records that could not be mapped or posted. Fix the mapping, then reprocess.</p>
${table('Open quarantine', ['Record', 'Connector', 'Mapping', 'Problem', 'Failed', 'Action'], quarantine.slice(0, PAGE_SIZE).map((q) => [
  `${q.resourceType} ${q.sourceId}`,
  q.connector,
  q.mapping,
  (q.outcome.issue ?? []).map((i) => [i.diagnostics ?? i.details?.text ?? i.code, (i.expression ?? []).join(', ')].filter(Boolean).join(' at ')).join('; ') || '—',
  html`${q.lastFailedAt}${q.attempts > 1 ? html` <span class="muted">(${q.attempts} attempts)</span>` : ''}`,
  canReprocess ? html`<form class="inline" method="post" action="/dashboard/quarantine/${q.id}/reprocess">${csrfField(ctx.csrf)}<button type="submit">Reprocess</button></form>` : '—',
]), 'Nothing is quarantined.')}
${qPager(kind, qOffset, quarantine.length > PAGE_SIZE)}`;
  return { title: 'Worklist', active: 'worklist', body };
}

interface WritebackView { id: string; writebackId: string; kind: string; amountMinor: number; currency: string; status: string; attempts: number; lastError: string | null; target: string | null; lastAttemptAt: string | null }

/** The write-backs the EHR refused or that ran out of retries, with replay (when the write-back routes are served). */
async function failedWritebacks(ctx: PageContext): Promise<Html> {
  if (!hasRoute(ctx, 'get', '/writebacks')) return html``;
  const [dead, failed] = await Promise.all(['dead', 'failed'].map((status) =>
    callRoute<{ writebacks: WritebackView[] }>(ctx, 'get', '/writebacks', { query: { status, limit: PAGE_SIZE, offset: 0 } })));
  const rows = [...(dead?.writebacks ?? []), ...(failed?.writebacks ?? [])];
  const canReplay = hasRoute(ctx, 'post', '/writebacks/{id}/replay');
  return html`<h2 id="writebacks">Failed write-backs</h2>
<p class="muted">Payments the EHR has not accepted yet. Dead ones are no longer retried: fix the cause, then replay.</p>
${table('Failed and dead write-backs', ['Write-back', 'Amount', 'Status', 'Attempts', 'Last attempt', 'EHR said', 'Action'], rows.map((w) => [
  w.writebackId, showMoney({ amountMinor: w.amountMinor, currency: w.currency }), w.status, String(w.attempts), formatDateTime(w.lastAttemptAt), w.lastError ?? '—',
  canReplay ? html`<form class="inline" method="post" action="/dashboard/writebacks/${w.id}/replay">${csrfField(ctx.csrf)}<button type="submit">Replay</button></form>` : '—',
]), 'Every write-back was accepted or is still being tried.')}`;
}

function qPager(kind: string | undefined, offset: number, hasNext: boolean): Html {
  const previous = offset > 0 ? withQuery('/dashboard/worklist', { kind, qoffset: Math.max(0, offset - PAGE_SIZE) || undefined }) + '#quarantine' : undefined;
  const next = hasNext ? withQuery('/dashboard/worklist', { kind, qoffset: offset + PAGE_SIZE }) + '#quarantine' : undefined;
  if (!previous && !next) return html``;
  return html`<nav class="pager" aria-label="Quarantine pages">${previous ? html`<a href="${previous}" rel="prev">← Previous</a>` : ''}${next ? html`<a href="${next}" rel="next">Next →</a>` : ''}</nav>`;
}

/** `POST /dashboard/worklist/{id}/resolve` (`action` = `lift-hold` | `resolve`, optional `note`). */
export async function resolveTaskAction(ctx: PageContext): Promise<string> {
  const id = param(ctx, 'id');
  const tasks = new StaffTaskRepository(ctx.deps.db.pool, ctx.deps.clock);
  const task = UUID.test(id) ? await tasks.get(ctx.practice.id, id) : undefined;
  if (!task) throw new DashboardNotFound(`No task ${id} in this practice.`);
  if (task.status !== 'open') return '/dashboard/worklist?notice=already-resolved';
  const note = typeof ctx.req.body?.note === 'string' ? ctx.req.body.note.trim().slice(0, 500) : '';
  const liftHold = ctx.req.body?.action === 'lift-hold' && task.balanceId !== null;
  const ledger = new LedgerRepository(ctx.deps.db.pool, ctx.deps.cipher, ctx.deps.clock);
  const audit = new AuditLog(ctx.deps.db, ctx.deps.clock);
  const resolved = await withTransaction(ctx.deps.db, async (tx) => {
    let lifted: string | null = null;
    if (liftHold) {
      const balance = await ledger.on(tx).getBalance(task.balanceId!);
      if (balance && balance.practiceId === ctx.practice.id && (balance.status === 'disputed' || balance.status === 'on_hold')) {
        lifted = automaticStatus('open', balance.patientAmount.amount);
        await ledger.on(tx).setStatus(balance.id, { status: lifted as 'open' | 'paid', holdReason: null, actor: ctx.actor, note: note || `${task.kind} resolved` });
      }
    }
    const done = await new StaffTaskRepository(tx, ctx.deps.clock).resolve(ctx.practice.id, task.id, ctx.actor, note || (liftHold ? 'hold lifted' : 'resolved'));
    if (done) {
      await audit.append({
        practiceId: ctx.practice.id, actor: ctx.actor, action: 'staff_task.resolve', entityType: 'staff_task', entityId: task.id,
        detail: { via: 'dashboard', kind: task.kind, ...(lifted ? { balanceId: task.balanceId, balanceStatus: lifted } : {}) },
      }, tx);
    }
    return done;
  });
  if (!resolved) return '/dashboard/worklist?notice=already-resolved';
  return `/dashboard/worklist?notice=${liftHold ? 'hold-lifted' : 'task-resolved'}`;
}

/** `POST /dashboard/quarantine/{id}/reprocess` (optional `task` to resolve when the record now posts). */
export async function reprocessAction(ctx: PageContext): Promise<string> {
  const id = param(ctx, 'id');
  const result = await callRoute<{ status: string }>(ctx, 'post', '/quarantine/{id}/reprocess', { params: { id } }).catch((error: unknown) => {
    if ((error as { status?: number }).status === 404) throw new DashboardNotFound((error as Error).message);
    throw error;
  });
  if (!result) throw new DashboardNotFound('Reprocessing is not available in this deployment.');
  if (result.status === 'quarantined') return '/dashboard/worklist?notice=still-quarantined#quarantine';
  const taskId = typeof ctx.req.body?.task === 'string' && UUID.test(ctx.req.body.task) ? ctx.req.body.task : undefined;
  if (taskId) await new StaffTaskRepository(ctx.deps.db.pool, ctx.deps.clock).resolve(ctx.practice.id, taskId, ctx.actor, `reprocessed: ${result.status}`);
  return '/dashboard/worklist?notice=reprocessed#quarantine';
}

/** `POST /dashboard/writebacks/{id}/replay`: the write-back stage's own replay route, when this deployment has it. */
export async function replayAction(ctx: PageContext): Promise<string> {
  const id = param(ctx, 'id');
  const result = await callRoute(ctx, 'post', '/writebacks/{id}/replay', { params: { id } }).catch((error: unknown) => {
    if ((error as { status?: number }).status === 404) throw new DashboardNotFound((error as Error).message);
    if ((error as { status?: number }).status === 409) return null;
    throw error;
  });
  if (result === null) return '/dashboard/worklist?notice=not-replayable#writebacks';
  if (result === undefined) throw new DashboardNotFound('Replaying write-backs is not available in this deployment.');
  const taskId = typeof ctx.req.body?.task === 'string' && UUID.test(ctx.req.body.task) ? ctx.req.body.task : undefined;
  if (taskId) await new StaffTaskRepository(ctx.deps.db.pool, ctx.deps.clock).resolve(ctx.practice.id, taskId, ctx.actor, 'write-back replayed');
  return '/dashboard/worklist?notice=replayed#writebacks';
}

/** Words for a task kind. */
export const taskKindLabel = (kind: StaffTaskKind): string => KIND_LABELS[kind] ?? words(kind);
