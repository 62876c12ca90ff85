/**
 * Policies and template previews: each outreach policy in `policies/` (steps, day offsets, channels, conditions,
 * quiet hours, caps, no-send days) and every template its steps use, rendered with the sample values in English
 * and Spanish, exactly as patients would receive them. Nothing about real patients is shown.
 */
import { loadDataFiles } from '../config/data-files.ts';
import { isMessageChannel, LANGUAGES } from '../domain/outreach.ts';
import { parsePolicy, type Policy, type StepConditions } from '../domain/policy.ts';
import { defaultTemplates, previewTemplate, SAMPLE_VALUES } from '../outreach/templates.ts';
import type { PageContext, PageResult } from './context.ts';
import { html, showMoney, table, type Html } from './html.ts';

function conditions(c: StepConditions): string {
  const parts: string[] = [];
  if (c.statuses?.length) parts.push(`status ${c.statuses.join(' or ')}`);
  if (c.minimumAmountCents !== undefined) parts.push(`at least ${showMoney({ amount: c.minimumAmountCents, currency: 'USD' })}`);
  if (c.minimumAgeDays !== undefined) parts.push(`at least ${c.minimumAgeDays} days old`);
  if (c.noPlan) parts.push('no plan');
  if (c.noHold) parts.push('no hold');
  if (c.consent) parts.push('consent needed');
  return parts.join(', ') || 'none';
}

function previews(policy: Policy): Html {
  const seen = new Set<string>();
  const blocks: Html[] = [];
  for (const step of policy.steps) {
    for (const channel of step.channels) {
      if (!isMessageChannel(channel) || seen.has(`${step.template}/${channel}`)) continue;
      seen.add(`${step.template}/${channel}`);
      for (const language of LANGUAGES) {
        const preview = previewTemplate(defaultTemplates, step.template, channel, language);
        if (!preview) continue;
        blocks.push(html`<details><summary>${step.template} · ${channel} · ${language}${preview.language !== language ? ' (falls back to English)' : ''}</summary>
${preview.subject ? html`<p><strong>${preview.subject}</strong></p>` : ''}<pre>${preview.text}</pre>
${preview.sms ? html`<p class="muted">${preview.sms.segments} segment(s), ${preview.sms.encoding}</p>` : ''}</details>`);
      }
    }
  }
  return blocks.length ? html`${blocks}` : html`<p class="muted">No templates to preview.</p>`;
}

/** `GET /dashboard/policies`. */
export async function policiesPage(ctx: PageContext): Promise<PageResult> {
  const files = loadDataFiles(ctx.deps.configDir).policies;
  const sections = files.map((file) => {
    let policy: Policy;
    try {
      policy = parsePolicy(file.data);
    } catch (error) {
      return html`<section><h2>${file.name}</h2><p class="notice error">${(error as Error).message}</p></section>`;
    }
    return html`<section aria-labelledby="policy-${policy.name}"><h2 id="policy-${policy.name}">${policy.name}</h2>
${typeof file.data.description === 'string' ? html`<p>${file.data.description}</p>` : ''}
<p>Quiet hours ${policy.quietHours.start}–${policy.quietHours.end}${policy.timeZone ? ` (${policy.timeZone})` : ''}; at most ${policy.caps.perBalancePer7Days} attempt(s) per balance in 7 days and ${policy.caps.perChannelPerDay} per channel per day; no sending on ${policy.noSendDays.join(', ') || 'no day'}${policy.nonprofit501r ? '; nonprofit 501(r) rules apply' : ''}.</p>
${table(`Steps of ${policy.name}`, ['Step', 'Day', 'Channels', 'Template', 'Conditions'], policy.steps.map((s) => [
  html`${s.id}${s.finalNotice ? ' (final notice)' : ''}`, String(s.dayOffset), s.channels.join(', '), s.template, conditions(s.conditions),
]))}
<h3>Template previews</h3>
<p class="muted">With sample values: ${SAMPLE_VALUES.firstName}, ${showMoney({ amount: SAMPLE_VALUES.amountDueCents, currency: SAMPLE_VALUES.currency })}, ${SAMPLE_VALUES.practiceName}.</p>
${previews(policy)}
</section>`;
  });
  const body = html`<h1>Policies</h1>${sections.length ? sections : html`<p>No policy files in <code>policies/</code>.</p>`}`;
  return { title: 'Policies', active: 'policies', body };
}
