/**
 * The demo's practice-management system: it bills visits as HL7 v2.5.1 DFT^P03 messages (one per visit, its own
 * account in PID-18) with the charges (CG), the insurance payment (IP) and the contractual adjustment (AJ), so
 * the patient portion is what is left, as in a real practice. Patients are fictitious (555-01xx phones,
 * example.com emails) and deterministic for a seed, like the sandbox EHR's.
 *
 * The messages go to Settle's MLLP listener over real sockets (see `sendVisits`), through the same store,
 * ACK and processing as a real feed.
 */
import type { Logger } from 'winston';
import { MllpSender } from '../connectors/hl7v2/mllp-sender.ts';
import { CITIES, FAMILY, GIVEN_F, GIVEN_M, prng, SERVICES, STREETS } from '../sandbox-ehr/seed.ts';

/** One billed visit. */
export interface DemoVisit {
  /** Visit number, unique in the feed: MSH-10 and the account (PID-18) derive from it. */
  readonly number: number;
  /** ISO date of the visit. */
  readonly serviceDate: string;
  readonly hl7: string;
  /** Charges − insurance − adjustment, in cents. */
  readonly patientCents: number;
}

/** How many patients the practice-management system knows; visits pick among them. */
const PATIENTS = 1_500;

const amount = (cents: number) => `${cents < 0 ? '-' : ''}${Math.floor(Math.abs(cents) / 100)}.${String(Math.abs(cents) % 100).padStart(2, '0')}`;
const hl7Date = (iso: string) => iso.replaceAll('-', '');

/** The patient of the practice-management system with number `n` (deterministic for the seed). */
function patient(seed: number, n: number) {
  const rnd = prng(seed * 100_003 + n);
  const int = (min: number, max: number) => min + Math.floor(rnd() * (max - min + 1));
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;
  const female = rnd() < 0.52;
  const given = pick(female ? GIVEN_F : GIVEN_M);
  const family = pick(FAMILY);
  const [city, state, zip3] = pick(CITIES);
  const birth = `${int(1940, 2019)}${String(int(1, 12)).padStart(2, '0')}${String(int(1, 28)).padStart(2, '0')}`;
  return {
    mrn: `PM${String(n).padStart(6, '0')}`,
    given,
    family,
    sex: female ? 'F' : 'M',
    birth,
    address: `${int(1, 9999)} ${pick(STREETS)}^^${city}^${state}^${zip3}${String(int(0, 99)).padStart(2, '0')}^US`,
    phone: `(${int(201, 989)})555-01${String(int(0, 99)).padStart(2, '0')}`,
    email: rnd() < 0.6 ? `${given}.${family}.pm${n}@example.com`.toLowerCase() : '',
    language: rnd() < 0.2 ? 'SPA' : 'ENG',
    insured: rnd() < 0.8,
  };
}

/**
 * The visits billed on `serviceDate` (deterministic for seed and date): `count` DFT^P03 messages numbered from
 * `firstNumber`.
 */
export function visitsOn(seed: number, serviceDate: string, firstNumber: number, count: number): DemoVisit[] {
  // The numbers are part of the seed: two batches billed on the same day (the live demo sends a few every minute) differ.
  const rnd = prng(seed * 7_919 + Number(hl7Date(serviceDate)) + firstNumber * 104_729);
  const int = (min: number, max: number) => min + Math.floor(rnd() * (max - min + 1));
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;
  const visits: DemoVisit[] = [];
  for (let i = 0; i < count; i++) {
    const number = firstNumber + i;
    const p = patient(seed, int(1, PATIENTS));
    const lines: string[] = [];
    let billed = 0;
    const charges = int(1, 3);
    for (let c = 0; c < charges; c++) {
      const [code, display, min, max] = pick(SERVICES);
      const cents = int(min, max);
      billed += cents;
      lines.push(`CG|${code}^${display}^CPT|||1|${amount(cents)}&USD`);
    }
    let patientCents = billed;
    if (p.insured) {
      const insurance = Math.floor((billed * int(50, 85)) / 100);
      const adjustment = Math.floor((billed * int(0, 10)) / 100);
      patientCents -= insurance + adjustment;
      lines.push(`AJ|INSPAY^Insurance payment|||1|${amount(-insurance)}&USD`);
      if (adjustment > 0) lines.push(`AJ|WO^Contractual adjustment|||1|${amount(-adjustment)}&USD`);
    }
    const date = hl7Date(serviceDate);
    const segments = [
      `MSH|^~\\&|DEMOPMS|MAPLESTREET|SETTLE|MAPLESTREET|${date}170000||DFT^P03^DFT_P03|DEMO${number}|P|2.5.1`,
      `EVN|P03|${date}170000`,
      `PID|1||${p.mrn}^^^MAPLESTREET^MR||${p.family}^${p.given}||${p.birth}|${p.sex}|||${p.address}||${p.phone}^PRN^PH^${p.email}||${p.language}|||V${number}^^^MAPLESTREET`,
      'PV1|1|O',
      ...lines.map((line, index) => `FT1|${index + 1}|||${date}||${line}`),
    ];
    visits.push({ number, serviceDate, hl7: segments.join('\r'), patientCents });
  }
  return visits;
}

/** Connections visits are sent on at once: the listener commits the messages that arrive together in one batch. */
const SEND_CONNECTIONS = 4;

/**
 * Sends visits to an MLLP listener over up to {@link SEND_CONNECTIONS} connections at once (the visits dealt
 * among them in turn), each visit acknowledged before the next on its connection.
 * @returns how many were accepted (AA); the others are counted in `refused` with their reasons in the log.
 */
export async function sendVisits(target: { host: string; port: number; logger: Logger }, visits: readonly DemoVisit[]): Promise<{ accepted: number; refused: number }> {
  const lanes = Math.min(SEND_CONNECTIONS, visits.length);
  const outcomes = await Promise.all(Array.from({ length: lanes }, (_, lane) => sendInTurn(target, visits.filter((_, i) => i % lanes === lane))));
  return { accepted: outcomes.reduce((n, o) => n + o.accepted, 0), refused: outcomes.reduce((n, o) => n + o.refused, 0) };
}

/** Sends visits on one connection, one at a time, each acknowledged before the next. */
async function sendInTurn(target: { host: string; port: number; logger: Logger }, visits: readonly DemoVisit[]): Promise<{ accepted: number; refused: number }> {
  const sender = new MllpSender({ host: target.host, port: target.port, logger: target.logger, ackTimeoutMs: 30_000 });
  let accepted = 0;
  let refused = 0;
  try {
    for (const visit of visits) {
      const outcome = await sender.send(visit.hl7);
      if (outcome.status === 'delivered') accepted++;
      else {
        refused++;
        target.logger.warn('demo visit not accepted', { controlId: outcome.controlId, status: outcome.status, reason: 'reason' in outcome ? outcome.reason : undefined });
      }
    }
  } finally {
    await sender.close();
  }
  return { accepted, refused };
}
