/**
 * Accessibility scans in the browser tests: `axe-core` injected into the page as it is and run against the WCAG 2
 * level A and AA rules (2.0, 2.1 and 2.2). A scan fails with one line per violation: rule id, impact and the
 * targets (CSS selectors) of the nodes that break it, so the fix can be found without re-running the browser.
 */
import assert from 'node:assert/strict';
import axe from 'axe-core';
import type { Page } from 'playwright-core';

/** The axe rule tags a scan runs: WCAG 2.0, 2.1 and 2.2, levels A and AA. */
export const WCAG_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] as const;

/** One rule broken on the page. */
export interface AxeViolation {
  id: string;
  impact: string;
  help: string;
  targets: string[];
}

/**
 * Runs axe on the page as it is now. The source goes in through the DevTools protocol (`page.evaluate`), which the
 * pages' Content-Security-Policy does not apply to, so the scan needs no change to the pages' headers.
 */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(axe.source);
  const tags = [...WCAG_TAGS];
  const results = await page.evaluate(
    `axe.run(document, { runOnly: { type: 'tag', values: ${JSON.stringify(tags)} }, resultTypes: ['violations'] })`,
  ) as axe.AxeResults;
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact ?? 'unknown',
    help: v.help,
    targets: v.nodes.map((n) => n.target.map(String).join(' ')),
  }));
}

/** The phone viewport every page is also scanned at: wide tables scroll there, and reflow problems show. */
export const PHONE_VIEWPORT = { width: 390, height: 844 } as const;

/**
 * Fails, listing every violation (rule id, impact, help and targets), unless axe finds none on the page, both at
 * the page's viewport and at {@link PHONE_VIEWPORT} (the viewport is restored afterwards).
 */
export async function assertAccessible(page: Page, label: string): Promise<void> {
  const viewport = page.viewportSize();
  const sizes = viewport && viewport.width !== PHONE_VIEWPORT.width ? [viewport, PHONE_VIEWPORT] : [viewport ?? PHONE_VIEWPORT];
  const lines: string[] = [];
  try {
    for (const size of sizes) {
      await page.setViewportSize(size);
      for (const v of await axeViolations(page)) lines.push(`  ${v.id} (${v.impact}) at ${size.width}px: ${v.help} — ${v.targets.join(', ')}`);
    }
  } finally {
    if (viewport) await page.setViewportSize(viewport);
  }
  assert.deepEqual(lines, [], `axe (WCAG 2 A/AA) on ${label} at ${page.url()}:\n${lines.join('\n')}`);
}
