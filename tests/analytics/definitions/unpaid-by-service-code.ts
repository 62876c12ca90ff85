/**
 * Unpaid by service code: which services most often go unpaid. Patient-responsibility charge lines dated in
 * the period, grouped by service code (`(none)` when the source gave none), the 20 (or `limit`) with the most
 * unpaid first. See unpaid-lines.ts for what "unpaid" means.
 */
import type { Queryable } from '../../../src/store/database.ts';
import { int, PERIOD_CTE, ratio, type AnalyticsPeriod, type AnalyticsResult } from '../../../src/analytics/types.ts';
import { UNPAID_GROUP_SELECT, UNPAID_LINES_CTE } from './unpaid-lines.ts';
import type { ServiceCodeRow } from '../../../src/analytics/unpaid-by-service-code.ts';

const COLUMNS = ['serviceCode', 'charges', 'billedMinor', 'unpaidCharges', 'unpaidMinor', 'unpaidRate'] as const;

const SQL = `WITH ${PERIOD_CTE}, ${UNPAID_LINES_CTE}
SELECT code, ${UNPAID_GROUP_SELECT}
FROM unpaid_groups WHERE payer = 'patient'
GROUP BY code HAVING sum(charges) > 0 ORDER BY sum(unpaid) DESC, sum(unpaid_charges) DESC, code LIMIT $5`;

/** The service codes with the most unpaid patient responsibility, most first. */
export async function unpaidByServiceCode(db: Queryable, period: AnalyticsPeriod & { limit?: number }): Promise<AnalyticsResult<ServiceCodeRow>> {
  const { rows } = await db.query<{ code: string; charges: string; billed: string; unpaid_charges: string; unpaid: string }>(
    SQL,
    [period.practiceId, period.from, period.to, period.currency, period.limit ?? 20],
  );
  return {
    measure: 'unpaid-by-service-code',
    from: period.from,
    to: period.to,
    currency: period.currency,
    asOf: 'live',
    columns: COLUMNS,
    rows: rows.map((r) => ({
      serviceCode: r.code,
      charges: int(r.charges),
      billedMinor: int(r.billed),
      unpaidCharges: int(r.unpaid_charges),
      unpaidMinor: int(r.unpaid),
      unpaidRate: ratio(int(r.unpaid), int(r.billed)),
    })),
  };
}
