/**
 * Generator of realistic practice data for the sandbox EHR: Patients, a guarantor Account per patient, Coverage
 * for the insured, and Invoices whose line items carry a billed amount (`base`) and the insurance payment
 * (`deduction`); `totalGross` is what was billed and `totalNet` the patient portion, in USD with exact cents.
 *
 * Deterministic for a seed: the same seed gives byte-identical resources (ids, versionIds, lastUpdated included).
 * The data is fictitious (phones in 555-01xx, example.com emails).
 */
import type { Account, Coverage, Invoice, InvoiceLineItem, InvoiceLineItemPriceComponent, Patient, Resource } from '@medplum/fhirtypes';
import type { MemoryRepository } from '@medplum/fhir-router';

export interface SeedOptions {
  patients: number;
  seed: number;
  /** lastUpdated of the first resource; later ones follow within days. Default 2026-01-05T09:00:00Z. */
  start?: Date;
  /** Also create Coverage for insured patients; default true. */
  coverage?: boolean;
}

export interface SeedSummary {
  patients: number;
  accounts: number;
  coverages: number;
  invoices: number;
  lineItems: number;
  /** Sum of all Invoice.totalNet in cents (the patient portions). */
  patientBalanceCents: number;
  /** Ids by resource type, in creation order. */
  ids: Record<'Patient' | 'Account' | 'Coverage' | 'Invoice', string[]>;
}

export const MRN_SYSTEM = 'http://sandbox-ehr.settle.test/fhir/sid/mrn';
export const ACCOUNT_SYSTEM = 'http://sandbox-ehr.settle.test/fhir/sid/account';
export const INVOICE_SYSTEM = 'http://sandbox-ehr.settle.test/fhir/sid/invoice';

export const GIVEN_F = ['Maria', 'Emma', 'Olivia', 'Ava', 'Sofia', 'Isabella', 'Mia', 'Grace', 'Chloe', 'Lucia', 'Hannah', 'Aisha', 'Mei', 'Priya', 'Fatima', 'Nora'];
export const GIVEN_M = ['James', 'Liam', 'Noah', 'Mateo', 'Lucas', 'Ethan', 'Daniel', 'Omar', 'Wei', 'Arjun', 'Samuel', 'Diego', 'Henry', 'Caleb', 'Andre', 'Kenji'];
export const FAMILY = ['Gonzalez', 'Smith', 'Johnson', 'Nguyen', 'Garcia', 'Brown', 'Patel', 'Kim', 'Martinez', 'Okafor', 'Williams', 'Lopez', 'Chen', 'Davis', 'Rossi', 'Haddad', 'Miller', 'Wilson', 'Cohen', 'Silva'];
export const STREETS = ['Elm Street', 'Maple Avenue', 'Oak Lane', 'Washington Street', 'Park Road', 'Cedar Court', 'Highland Avenue', 'Lake Drive', 'Main Street', 'Chestnut Hill Road'];
export const CITIES: [string, string, string][] = [
  ['Boston', 'MA', '021'],
  ['Springfield', 'IL', '627'],
  ['Austin', 'TX', '787'],
  ['Denver', 'CO', '802'],
  ['Portland', 'OR', '972'],
  ['Miami', 'FL', '331'],
  ['Columbus', 'OH', '432'],
  ['Phoenix', 'AZ', '850'],
];
const PAYERS = ['Blue Cross Blue Shield', 'Aetna', 'UnitedHealthcare', 'Cigna', 'Humana', 'Medicare Part B'];
/** [code, display, min cents, max cents] — office-visit style charges. */
export const SERVICES: [string, string, number, number][] = [
  ['99213', 'Office visit, established patient, low complexity', 9_500, 16_000],
  ['99214', 'Office visit, established patient, moderate complexity', 14_000, 23_000],
  ['99203', 'Office visit, new patient, low complexity', 12_000, 19_000],
  ['36415', 'Routine venipuncture', 1_000, 3_500],
  ['80053', 'Comprehensive metabolic panel', 2_500, 9_000],
  ['85025', 'Complete blood count with differential', 1_500, 6_000],
  ['93000', 'Electrocardiogram, complete', 3_500, 11_000],
  ['90471', 'Immunization administration', 2_000, 4_500],
  ['71046', 'Chest X-ray, 2 views', 6_000, 18_000],
];

/** mulberry32: small, fast, good enough for test data; never for anything secret. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Cents → a JSON number with at most two decimals that round-trips exactly through its decimal text. */
export function centsToAmount(cents: number): number {
  return Number((cents / 100).toFixed(2));
}

/** Parses a FHIR decimal (as JSON number) back to integer cents exactly, refusing more than 2 decimals. */
export function amountToCents(value: number): number {
  const text = String(value);
  if (!/^-?\d+(\.\d{1,2})?$/.test(text)) throw new Error(`not an exact 2-decimal amount: ${text}`);
  const [whole, frac = ''] = text.replace('-', '').split('.');
  const cents = Number(whole) * 100 + Number(frac.padEnd(2, '0'));
  return text.startsWith('-') ? -cents : cents;
}

/** Seeds `repo` with a practice of `patients` patients; deterministic for `seed`. */
export async function seedPractice(repo: MemoryRepository, options: SeedOptions): Promise<SeedSummary> {
  const rnd = prng(options.seed);
  const int = (min: number, max: number) => min + Math.floor(rnd() * (max - min + 1));
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(rnd() * 16).toString(16)).join('');
  const uuid = () => `${hex(8)}-${hex(4)}-4${hex(3)}-${'89ab'[int(0, 3)]}${hex(3)}-${hex(12)}`;
  let at = (options.start ?? new Date('2026-01-05T09:00:00Z')).getTime();
  // Several resources often share one lastUpdated (a batch import), as on real servers.
  const stamp = () => {
    if (rnd() < 0.7) at += int(1, 90) * 60_000;
    return new Date(at).toISOString();
  };
  const meta = () => ({ versionId: '1', lastUpdated: stamp() });
  const summary: SeedSummary = { patients: 0, accounts: 0, coverages: 0, invoices: 0, lineItems: 0, patientBalanceCents: 0, ids: { Patient: [], Account: [], Coverage: [], Invoice: [] } };
  const created: Resource[] = [];

  for (let p = 0; p < options.patients; p++) {
    const female = rnd() < 0.52;
    const given = pick(female ? GIVEN_F : GIVEN_M);
    const family = pick(FAMILY);
    const [city, state, zip3] = pick(CITIES);
    const birth = new Date(Date.UTC(int(1938, 2020), int(0, 11), int(1, 28)));
    const mrn = String(100_000 + options.seed * 7 + p * 13).padStart(8, '0');
    const patientId = uuid();
    const patient: Patient = {
      resourceType: 'Patient',
      id: patientId,
      meta: meta(),
      identifier: [{ use: 'usual', type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }] }, system: MRN_SYSTEM, value: mrn }],
      active: true,
      name: [{ use: 'official', family, given: rnd() < 0.3 ? [given, pick(female ? GIVEN_F : GIVEN_M)] : [given] }],
      telecom: [
        { system: 'phone', value: `(${int(201, 989)}) 555-01${String(int(0, 99)).padStart(2, '0')}`, use: 'mobile' },
        ...(rnd() < 0.7 ? [{ system: 'email' as const, value: `${given}.${family}${int(1, 99)}@example.com`.toLowerCase(), use: 'home' as const }] : []),
      ],
      gender: female ? 'female' : 'male',
      birthDate: birth.toISOString().slice(0, 10),
      address: [{ use: 'home', line: [`${int(1, 9999)} ${pick(STREETS)}`], city, state, postalCode: `${zip3}${String(int(0, 99)).padStart(2, '0')}`, country: 'US' }],
      communication: [{ language: { coding: [{ system: 'urn:ietf:bcp:47', code: rnd() < 0.2 ? 'es' : 'en' }] }, preferred: true }],
    };
    created.push(patient);
    summary.ids.Patient.push(patientId);

    const insured = rnd() < 0.8;
    let coverageId: string | undefined;
    if (insured && options.coverage !== false) {
      coverageId = uuid();
      const coverage: Coverage = {
        resourceType: 'Coverage',
        id: coverageId,
        meta: meta(),
        status: 'active',
        subscriberId: `W${int(10_000_000, 99_999_999)}`,
        beneficiary: { reference: `Patient/${patientId}` },
        relationship: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/subscriber-relationship', code: 'self' }] },
        payor: [{ display: pick(PAYERS) }],
      };
      created.push(coverage);
      summary.ids.Coverage.push(coverageId);
    }

    const accountId = uuid();
    const account: Account = {
      resourceType: 'Account',
      id: accountId,
      meta: meta(),
      identifier: [{ system: ACCOUNT_SYSTEM, value: `A${mrn}` }],
      status: 'active',
      type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PBILLACCT', display: 'patient billing account' }] },
      name: `Guarantor account ${mrn}`,
      subject: [{ reference: `Patient/${patientId}` }],
      guarantor: [{ party: { reference: `Patient/${patientId}` } }],
      ...(coverageId ? { coverage: [{ coverage: { reference: `Coverage/${coverageId}` }, priority: 1 }] } : {}),
    };
    created.push(account);
    summary.ids.Account.push(accountId);

    const invoices = int(0, 3);
    for (let i = 0; i < invoices; i++) {
      const lines = int(1, 4);
      const lineItem: InvoiceLineItem[] = [];
      let gross = 0;
      let net = 0;
      for (let l = 0; l < lines; l++) {
        const [code, display, min, max] = pick(SERVICES);
        const billed = int(min, max);
        // Insurance pays 50–90 % of the billed amount when the patient is insured; the rest is the patient's.
        const insurancePaid = insured ? Math.floor((billed * int(50, 90)) / 100) : 0;
        gross += billed;
        net += billed - insurancePaid;
        lineItem.push({
          sequence: l + 1,
          chargeItemCodeableConcept: { coding: [{ system: 'http://www.ama-assn.org/go/cpt', code, display }] },
          priceComponent: [
            { type: 'base', amount: { value: centsToAmount(billed), currency: 'USD' } },
            ...(insurancePaid > 0
              ? [{ type: 'deduction', code: { text: 'Insurance payment' }, amount: { value: centsToAmount(insurancePaid), currency: 'USD' } } satisfies InvoiceLineItemPriceComponent]
              : []),
          ],
        });
      }
      const serviceDate = new Date(at - int(3, 120) * 86_400_000);
      const invoiceId = uuid();
      const invoice: Invoice = {
        resourceType: 'Invoice',
        id: invoiceId,
        meta: meta(),
        identifier: [{ system: INVOICE_SYSTEM, value: `INV-${options.seed}-${summary.invoices + 1}` }],
        status: rnd() < 0.9 ? 'issued' : 'balanced',
        subject: { reference: `Patient/${patientId}` },
        recipient: { reference: `Patient/${patientId}` },
        account: { reference: `Account/${accountId}` },
        date: serviceDate.toISOString().slice(0, 10),
        lineItem,
        totalGross: { value: centsToAmount(gross), currency: 'USD' },
        totalNet: { value: centsToAmount(net), currency: 'USD' },
      };
      created.push(invoice);
      summary.ids.Invoice.push(invoiceId);
      summary.invoices++;
      summary.lineItems += lines;
      summary.patientBalanceCents += net;
    }
  }

  await repo.withSeeding(async () => {
    for (const resource of created) await repo.createResource(resource);
  });
  summary.patients = summary.ids.Patient.length;
  summary.accounts = summary.ids.Account.length;
  summary.coverages = summary.ids.Coverage.length;
  return summary;
}
