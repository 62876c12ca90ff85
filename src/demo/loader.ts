/**
 * The live demo at full size without a long first start: the first start fast-forwards a spread-out slice of the
 * practice (so the dashboard is populated at once), then the rest of the practice arrives in the background
 * through the same real path as any practice's data: batches of patients appear in the sandbox EHR (updated now,
 * so the engine's incremental FHIR sync brings them) and the practice-management system bills the past visits
 * over MLLP. Until the last batch is in, the dashboard says the demo is still loading.
 */
import { DateTime } from 'luxon';
import type { Logger } from 'winston';
import { sendVisits, visitsOn } from './hl7-feed.ts';
import type { DemoWorld } from './world.ts';

/** What the background loading brings and how fast. */
export interface LoadPlan {
  /** Patients of the whole practice. */
  patients: number;
  /** Patients in the first slice (fast-forwarded on the first start), spread evenly over the seeded order. */
  firstSlice: number;
  /** Patients added to the sandbox EHR per batch. */
  patientsPerBatch: number;
  /** Days of past visits the practice-management system bills in the background, ending before `endsBefore`. */
  pastVisitDays: number;
  visitsPerPastDay: number;
}

/** Visit numbers of the past visits start here: apart from the live feed's, which count up from 1. */
const PAST_VISIT_NUMBERS = 100_000;

/** Whether patient `index` is in the first slice. */
export function inFirstSlice(plan: LoadPlan, index: number): boolean {
  const step = Math.max(1, Math.floor(plan.patients / Math.max(1, plan.firstSlice)));
  return index % step === 0 && index / step < plan.firstSlice;
}

/** The patients outside the first slice, in seeded order. */
function laterPatients(plan: LoadPlan): number[] {
  return Array.from({ length: plan.patients }, (_, i) => i).filter((i) => !inFirstSlice(plan, i));
}

/** How many batches the background loading takes (patients and past visits are spread over the same batches). */
export function batchCount(plan: LoadPlan): number {
  return Math.max(plan.pastVisitDays > 0 ? 1 : 0, Math.ceil(laterPatients(plan).length / plan.patientsPerBatch));
}

/** How far loading has come. */
export interface LoadProgress {
  batches: number;
  batchesDone: number;
  patientsInEhr: number;
  patients: number;
  pastVisitsSent: number;
  pastVisits: number;
}

/** Progress after `done` batches. */
export function progressAfter(plan: LoadPlan, done: number): LoadProgress {
  const later = laterPatients(plan);
  const batches = batchCount(plan);
  const pastVisits = plan.pastVisitDays * plan.visitsPerPastDay;
  const n = Math.min(done, batches);
  return {
    batches,
    batchesDone: n,
    patientsInEhr: plan.patients - later.length + Math.min(later.length, n * plan.patientsPerBatch),
    patients: plan.patients,
    pastVisitsSent: batches === 0 ? pastVisits : Math.floor((plan.pastVisitDays * n) / batches) * plan.visitsPerPastDay,
    pastVisits,
  };
}

/** The patients (by index) in the sandbox EHR once `done` batches are loaded: the first slice and those batches. */
export function loadedPatients(plan: LoadPlan, done: number): (index: number) => boolean {
  const loaded = new Set(laterPatients(plan).slice(0, done * plan.patientsPerBatch));
  return (index) => inFirstSlice(plan, index) || loaded.has(index);
}

/** The past visit days (ISO dates) batch `batch` bills: day 1 is the day before `endsBefore`, counting back. */
function visitDaysOf(plan: LoadPlan, batch: number, endsBefore: DateTime): string[] {
  const batches = batchCount(plan);
  const from = Math.floor((plan.pastVisitDays * batch) / batches);
  const to = Math.floor((plan.pastVisitDays * (batch + 1)) / batches);
  return Array.from({ length: to - from }, (_, i) => endsBefore.minus({ days: from + i + 1 }).toISODate()!);
}

/** The patients (by index) of batch `batch`. */
export function batchPatients(plan: LoadPlan, batch: number): number[] {
  return laterPatients(plan).slice(batch * plan.patientsPerBatch, (batch + 1) * plan.patientsPerBatch);
}

/**
 * Loads batch `batch`: its patients into the sandbox EHR (updated now), then its past visits over MLLP, each
 * acknowledged (so stored) before the next. The visits are numbered by day, so sending a batch again after a
 * restart repeats the same control ids, which the engine takes as replays.
 */
export async function loadBatch(
  deps: { world: DemoWorld; logger: Logger; plan: LoadPlan; seed: number; endsBefore: DateTime },
  batch: number,
): Promise<{ resources: number; visits: number }> {
  const { plan } = deps;
  const resources = await deps.world.addPatients(batchPatients(plan, batch));
  let visits = 0;
  for (const day of visitDaysOf(plan, batch, deps.endsBefore)) {
    const dayIndex = Math.round(deps.endsBefore.diff(DateTime.fromISO(day, { zone: deps.endsBefore.zone }), 'days').days);
    const sent = visitsOn(deps.seed, day, PAST_VISIT_NUMBERS + dayIndex * plan.visitsPerPastDay, plan.visitsPerPastDay);
    const outcome = await sendVisits({ ...deps.world.mllp, logger: deps.logger }, sent);
    visits += outcome.accepted;
  }
  return { resources, visits };
}

/** The line the dashboard shows while the demo is loading. */
export function loadingText(p: LoadProgress): string {
  return `The demo practice is still loading: ${p.patientsInEhr.toLocaleString('en-US')} of ${p.patients.toLocaleString('en-US')} patients are in the sandbox EHR and ${p.pastVisitsSent.toLocaleString('en-US')} of ${p.pastVisits.toLocaleString('en-US')} past visits have been billed; the figures grow as Settle syncs and posts them.`;
}
