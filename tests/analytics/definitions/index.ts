/**
 * The analytics measures as first written: each definition of the README as one SQL query straight over the
 * ledger, outreach and payment tables (no rollup). The engine answers from the analytics rollup instead; the
 * rollup tests check that it gives exactly these numbers. `plans` reads the live tables in the engine too.
 */
import type { Queryable } from '../../../src/store/database.ts';
import type { AnalyticsPeriod } from '../../../src/analytics/types.ts';
import type { MeasureName } from '../../../src/analytics/types.ts';
import { agingBuckets } from './aging.ts';
import { channelEffectiveness } from './channels.ts';
import { collectionRateByMonth } from './collection-rate.ts';
import { byAgeGroupAndZip3 } from './demographics.ts';
import { returnOnInvestment } from './roi.ts';
import { unpaidByPayer } from './unpaid-by-payer.ts';
import { unpaidByServiceCode } from './unpaid-by-service-code.ts';

/** Each rollup-backed measure's rows, straight from the definition. */
export const DEFINITIONS: Partial<Record<MeasureName, (db: Queryable, period: AnalyticsPeriod) => Promise<{ rows: object[] }>>> = {
  'collection-rate': collectionRateByMonth,
  aging: agingBuckets,
  'unpaid-by-service-code': unpaidByServiceCode,
  'unpaid-by-payer': unpaidByPayer,
  demographics: byAgeGroupAndZip3,
  channels: channelEffectiveness,
  roi: returnOnInvestment,
};
