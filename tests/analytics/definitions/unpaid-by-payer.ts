/**
 * Unpaid by payer kind: charge lines dated in the period grouped by who is expected to pay them (`patient` or
 * `insurance`); a patient line is unpaid while the balance's patient amount covers it, an insurance line while
 * its insurance amount does. See unpaid-lines.ts for what "unpaid" means.
 */
import { PAYER_KINDS, type PayerKind } from '../../../src/domain/ledger.ts';
import type { Queryable } from '../../../src/store/database.ts';
import { int, PERIOD_CTE, ratio, type AnalyticsPeriod, type AnalyticsResult } from '../../../src/analytics/types.ts';
import { UNPAID_GROUP_SELECT, UNPAID_LINES_CTE } from './unpaid-lines.ts';
import type { PayerRow } from '../../../src/analytics/unpaid-by-payer.ts';

const COLUMNS = ['payer', 'charges', 'billedMinor', 'unpaidCharges', 'unpaidMinor', 'unpaidRate'] as const;

const SQL = `WITH ${PERIOD_CTE}, ${UNPAID_LINES_CTE}
SELECT payer, ${UNPAID_GROUP_SELECT}
FROM unpaid_groups GROUP BY payer`;

/** Billed and unpaid per payer kind (both kinds always present). */
export async function unpaidByPayer(db: Queryable, period: AnalyticsPeriod): Promise<AnalyticsResult<PayerRow>> {
  const { rows } = await db.query<{ payer: PayerKind; charges: string; billed: string; unpaid_charges: string; unpaid: string }>(
    SQL,
    [period.practiceId, period.from, period.to, period.currency],
  );
  const byPayer = new Map(rows.map((r) => [r.payer, r]));
  return {
    measure: 'unpaid-by-payer',
    from: period.from,
    to: period.to,
    currency: period.currency,
    asOf: 'live',
    columns: COLUMNS,
    rows: PAYER_KINDS.map((payer) => {
      const r = byPayer.get(payer);
      return {
        payer,
        charges: int(r?.charges),
        billedMinor: int(r?.billed),
        unpaidCharges: int(r?.unpaid_charges),
        unpaidMinor: int(r?.unpaid),
        unpaidRate: ratio(int(r?.unpaid), int(r?.billed)),
      };
    }),
  };
}
