/**
 * The overview: key figures and charts for the last twelve months, from the analytics measures (src/analytics),
 * and what needs a person. Aggregates only: no patient is named, so the view is not a PHI view.
 */
import { DateTime } from 'luxon';
import {
  agingBuckets, channelEffectiveness, collectionRateByMonth, paymentPlans, returnOnInvestment, unpaidByPayer, unpaidByServiceCode, type AnalyticsPeriod,
} from '../analytics/index.ts';
import { QuarantineRepository } from '../store/quarantine.ts';
import { StaffTaskRepository } from '../store/staff-tasks.ts';
import { barChart } from './charts.ts';
import type { PageContext, PageResult } from './context.ts';
import { html, showMoney } from './html.ts';

/** Figures are counted up to this many (the worklist and quarantine show the rest). */
const COUNT_CAP = 1000;

const percent = (rate: number | null) => (rate === null ? '—' : `${(rate * 100).toFixed(1)}%`);

/** The period the overview covers: the twelve calendar months up to today, in the practice's time zone. */
export function overviewPeriod(practiceId: string, timeZone: string, now: Date, currency = 'USD'): AnalyticsPeriod {
  const today = DateTime.fromJSDate(now, { zone: timeZone });
  return { practiceId, from: today.startOf('month').minus({ months: 11 }).toISODate()!, to: today.toISODate()!, currency };
}

/** When the rollup the figures come from was refreshed, in the practice's time zone (`2026-03-02 14:05`). */
function asOfLabel(asOf: string, timeZone: string): string {
  return DateTime.fromISO(asOf).setZone(timeZone).toFormat('yyyy-MM-dd HH:mm');
}

/** `GET /dashboard`. */
export async function overviewPage(ctx: PageContext): Promise<PageResult> {
  const db = ctx.deps.db.pool;
  const period = overviewPeriod(ctx.practice.id, ctx.practice.timeZone, ctx.deps.clock.now());
  const [collection, aging, serviceCodes, payers, channels, plans, roi, tasks, quarantine] = await Promise.all([
    collectionRateByMonth(db, period),
    agingBuckets(db, period),
    unpaidByServiceCode(db, { ...period, limit: 10 }),
    unpaidByPayer(db, period),
    channelEffectiveness(db, period),
    paymentPlans(db, period),
    returnOnInvestment(db, period),
    new StaffTaskRepository(db, ctx.deps.clock).list(ctx.practice.id, { status: 'open', limit: COUNT_CAP }),
    new QuarantineRepository(db, ctx.deps.clock).list(ctx.practice.id, { limit: 500 }),
  ]);
  const usd = (minor: number) => showMoney({ amount: minor, currency: period.currency });
  const outstanding = aging.rows.reduce((sum, r) => sum + r.outstandingMinor, 0);
  const owing = aging.rows.reduce((sum, r) => sum + r.balances, 0);
  const billed = collection.rows.reduce((sum, r) => sum + r.billedMinor, 0);
  const collected = collection.rows.reduce((sum, r) => sum + r.collectedMinor, 0);
  const paidBalances = collection.rows.reduce((sum, r) => sum + r.balancesPaid, 0);
  const disputes = tasks.filter((t) => t.kind === 'dispute').length;
  const count = (n: number, cap: number) => (n >= cap ? `${cap}+` : String(n));

  const figures: [string, string][] = [
    ['Outstanding now', usd(outstanding)],
    ['Balances owing', String(owing)],
    ['Collected (12 months)', usd(collected)],
    ['Collection rate (12 months)', percent(billed > 0 ? Math.round((collected / billed) * 10_000) / 10_000 : null)],
    ['Balances paid (12 months)', String(paidBalances)],
    ['Open tasks', count(tasks.length, COUNT_CAP)],
    ['Open disputes', String(disputes)],
    ['Quarantined records', count(quarantine.length, 500)],
  ];
  const returns = roi.rows[0];
  if (returns) {
    figures.push(
      ['Collected through Settle', usd(returns.collectedMinor)],
      [`An agency would have kept (${returns.agencyCommissionPercent}%)`, usd(returns.agencyWouldHaveKeptMinor)],
      ['Staff phone time avoided', `${Math.round(returns.staffMinutesAvoided / 6) / 10} hours`],
    );
  }
  const byChannel = channels.rows.filter((r) => r.stepId === 'all' && r.channel !== 'all');

  const body = html`<h1>Overview</h1>
<p class="muted">${period.from} to ${period.to}, amounts in ${period.currency}; figures as of ${asOfLabel(aging.asOf, ctx.practice.timeZone)} (refreshed every few minutes).</p>
<h2 class="sr-only">Key figures</h2>
<ul class="figures">${figures.map(([label, value]) => html`<li><span class="label">${label}</span><span class="value">${value}</span></li>`)}</ul>
${tasks.length > 0 ? html`<p><a href="/dashboard/worklist">${count(tasks.length, COUNT_CAP)} task(s) need a person: open the worklist</a></p>` : ''}
<h2>Charts</h2>
<div class="charts">
${barChart({
  id: 'chart-collection', title: 'Billed and collected by month', series: ['Billed', 'Collected'], category: 'Month',
  description: 'Patient responsibility billed and patient payments collected in each month of the last twelve.',
  rows: collection.rows.map((r) => ({ label: r.month, values: [r.billedMinor, r.collectedMinor] })), format: usd,
})}
${barChart({
  id: 'chart-aging', title: 'Outstanding by age', series: ['Outstanding'], category: 'Age',
  description: 'What patients owe now, by days since the oldest open charge.',
  rows: aging.rows.map((r) => ({ label: `${r.bucket} days`, values: [r.outstandingMinor] })), format: usd,
})}
${barChart({
  id: 'chart-service-codes', title: 'Unpaid by service code (top 10)', series: ['Unpaid'], category: 'Service code',
  description: 'The service codes with the most unpaid patient responsibility in the period.',
  rows: serviceCodes.rows.map((r) => ({ label: r.serviceCode, values: [r.unpaidMinor] })), format: usd,
})}
${barChart({
  id: 'chart-payers', title: 'Unpaid by payer kind', series: ['Unpaid'], category: 'Payer',
  description: 'Unpaid amounts split by who is expected to pay.',
  rows: payers.rows.map((r) => ({ label: r.payer, values: [r.unpaidMinor] })), format: usd,
})}
${barChart({
  id: 'chart-channels', title: 'Sends, link opens and payments by channel', series: ['Sent', 'Link opened', 'Paid'], category: 'Channel',
  description: 'For each channel, messages sent in the period, how many led to a pay-link open, and how many to a payment (last touch within 30 days).',
  rows: byChannel.map((r) => ({ label: r.channel, values: [r.sends, r.opened, r.paid] })), format: (n) => String(n),
})}
${barChart({
  id: 'chart-plans', title: 'Payment plans by status', series: ['Plans'], category: 'Status',
  description: 'Payment plans started in the period, by where they stand now.',
  rows: plans.rows.filter((r) => r.plans > 0).map((r) => ({ label: r.status, values: [r.plans] })), format: (n) => String(n),
})}
</div>`;
  return { title: 'Overview', active: 'overview', body };
}
