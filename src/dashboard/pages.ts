/**
 * Which dashboard path renders which page, which form posts to which action, and the fixed notices an action
 * redirects with (`?notice=hold-lifted`; fixed texts, so a link cannot put words on the page).
 */
import { balanceDetailPage, balancesPage } from './balances.ts';
import { connectorsPage } from './connectors.ts';
import type { PageContext, PageResult } from './context.ts';
import { outboxPage } from './outbox.ts';
import { overviewPage } from './overview.ts';
import { policiesPage } from './policies.ts';
import { reprocessAction, replayAction, resolveTaskAction, worklistPage } from './worklist.ts';

/** GET paths (under /dashboard) and their pages. */
export const PAGES: Record<string, (ctx: PageContext) => Promise<PageResult>> = {
  '/': overviewPage,
  '/worklist': worklistPage,
  '/balances': balancesPage,
  '/balances/:id': balanceDetailPage,
  '/connectors': connectorsPage,
  '/outbox': outboxPage,
  '/policies': policiesPage,
};

/** POST paths and their actions; each returns where to go next. */
export const ACTIONS: Record<string, (ctx: PageContext) => Promise<string>> = {
  '/worklist/:id/resolve': resolveTaskAction,
  '/quarantine/:id/reprocess': reprocessAction,
  '/writebacks/:id/replay': replayAction,
};

/** Notices actions redirect with. */
export const NOTICES: Record<string, { kind: 'ok' | 'error'; text: string }> = {
  'hold-lifted': { kind: 'ok', text: 'Dispute resolved: the hold is lifted and outreach may resume.' },
  'task-resolved': { kind: 'ok', text: 'Task resolved.' },
  'already-resolved': { kind: 'error', text: 'That task was already resolved.' },
  reprocessed: { kind: 'ok', text: 'Record reprocessed: it is in the ledger now.' },
  'still-quarantined': { kind: 'error', text: 'Reprocessed, but the record still fails: see its problem below.' },
  replayed: { kind: 'ok', text: 'Write-back queued to be sent again.' },
  'not-replayable': { kind: 'error', text: 'That write-back was delivered or is already waiting: nothing to replay.' },
};
