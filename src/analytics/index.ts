/**
 * Analytics: one function per measure, each one set-based SQL query over one practice, one period and one
 * currency, returning exact integer minor units. The API (`GET /analytics/{measure}`), its CSV export and the
 * dashboard's charts all call these. Definitions are in each module's TSDoc and in the README ("Analytics").
 * Every measure but `plans` reads the analytics rollup (rollup.ts), so its answer is as of the rollup's last
 * refresh, which the answer's `asOf` gives.
 */
import type { Queryable } from '../store/database.ts';
import { agingBuckets, type AgingRow } from './aging.ts';
import { channelEffectiveness, type ChannelRow } from './channels.ts';
import { collectionRateByMonth, type CollectionRateRow } from './collection-rate.ts';
import { byAgeGroupAndZip3, type DemographicsRow } from './demographics.ts';
import { paymentPlans, type PlanRow } from './plans.ts';
import { returnOnInvestment, type RoiAssumptions, type RoiRow } from './roi.ts';
import type { AnalyticsPeriod, AnalyticsResult, MeasureName } from './types.ts';
import { unpaidByPayer, type PayerRow } from './unpaid-by-payer.ts';
import { unpaidByServiceCode, type ServiceCodeRow } from './unpaid-by-service-code.ts';

export { agingBuckets, type AgingRow } from './aging.ts';
export { ATTRIBUTION_WINDOW_DAYS, channelEffectiveness, type ChannelRow } from './channels.ts';
export { collectionRateByMonth, type CollectionRateRow } from './collection-rate.ts';
export { toCsv } from './csv.ts';
export { AGE_GROUPS, byAgeGroupAndZip3, SMALL_CELL_THRESHOLD, type AgeGroup, type DemographicsRow } from './demographics.ts';
export { defaultPeriod, resolvePeriod, PeriodError } from './period.ts';
export { PLAN_STATUSES, paymentPlans, type PlanRow, type PlanStatus } from './plans.ts';
export { returnOnInvestment, ROI_DEFAULTS, type RoiAssumptions, type RoiRow } from './roi.ts';
export { refreshAllRollups, refreshRollup, rollupAsOf, type RollupRefresh } from './rollup.ts';
export { MEASURE_NAMES, type AnalyticsPeriod, type AnalyticsResult, type MeasureName } from './types.ts';
export { unpaidByPayer, type PayerRow } from './unpaid-by-payer.ts';
export { unpaidByServiceCode, type ServiceCodeRow } from './unpaid-by-service-code.ts';

/** Options some measures take besides the period. */
export interface MeasureOptions extends RoiAssumptions {
  /** unpaid-by-service-code: how many codes (default 20). */
  limit?: number;
}

/** The row type of each measure. */
export interface MeasureRows {
  'collection-rate': CollectionRateRow;
  aging: AgingRow;
  'unpaid-by-service-code': ServiceCodeRow;
  'unpaid-by-payer': PayerRow;
  demographics: DemographicsRow;
  channels: ChannelRow;
  plans: PlanRow;
  roi: RoiRow;
}

/** A measure as the API lists it. */
export interface MeasureDefinition<Name extends MeasureName = MeasureName> {
  name: Name;
  title: string;
  run(db: Queryable, period: AnalyticsPeriod, options?: MeasureOptions): Promise<AnalyticsResult<MeasureRows[Name]>>;
}

/** Every measure, in the order the dashboard shows them. */
export const MEASURES: { readonly [Name in MeasureName]: MeasureDefinition<Name> } = {
  'collection-rate': { name: 'collection-rate', title: 'Collection rate and days to pay, by month', run: (db, p) => collectionRateByMonth(db, p) },
  aging: { name: 'aging', title: 'Outstanding and recovered by aging bucket', run: (db, p) => agingBuckets(db, p) },
  'unpaid-by-service-code': {
    name: 'unpaid-by-service-code', title: 'Unpaid by service code (top 20)', run: (db, p, o) => unpaidByServiceCode(db, { ...p, limit: o?.limit }),
  },
  'unpaid-by-payer': { name: 'unpaid-by-payer', title: 'Unpaid by payer kind', run: (db, p) => unpaidByPayer(db, p) },
  demographics: { name: 'demographics', title: 'By age group and 3-digit ZIP (small cells suppressed)', run: (db, p) => byAgeGroupAndZip3(db, p) },
  channels: { name: 'channels', title: 'Channel and step effectiveness: sends, link opens, payments', run: (db, p) => channelEffectiveness(db, p) },
  plans: { name: 'plans', title: 'Payment plans', run: (db, p) => paymentPlans(db, p) },
  roi: {
    name: 'roi', title: 'Return on investment',
    run: (db, p, o) => returnOnInvestment(db, { ...p, agencyCommissionPercent: o?.agencyCommissionPercent, minutesPerCall: o?.minutesPerCall }),
  },
};

/** Runs a measure by name. */
export function runMeasure<Name extends MeasureName>(name: Name, db: Queryable, period: AnalyticsPeriod, options: MeasureOptions = {}): Promise<AnalyticsResult<MeasureRows[Name]>> {
  return (MEASURES[name] as MeasureDefinition<Name>).run(db, period, options);
}
