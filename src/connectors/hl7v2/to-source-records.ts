/**
 * Stored HL7v2 messages → source records for the mapping layer. Pure: no I/O, no clock.
 *
 * - ADT A01/A04/A05/A08/A28/A31 → one `patient` record (PID) with its guarantors (GT1) and coverages (IN1).
 * - DFT^P03 → one record per FT1: a charge (CG), payment (PY), adjustment (AJ) or credit (CD) on the account
 *   of PID-18, with service date (FT1-4), quantity (FT1-10) and amount (FT1-11, exact minor units).
 * - BAR^P01/P05 → one `account` record (PID-18) with its visits (PV1), guarantors and coverages.
 *
 * Every record keeps its HL7 origin. Its body has the shape the mapping layer reads (src/mapping/hl7.ts):
 * `message`, the whole message as sent (segments joined by CR), and `segmentIndex`, the 0-based index of the
 * segment the record stands for (the PID, or the FT1 of a transaction), so `forEach: "FT1"` finds its own FT1,
 * keyed by its ordinal in the message, and HL7 paths (`FT1-11.1.1`, `GT1-3.1`) read as in the original.
 * Beside them: the decoded values (escape sequences replaced, amounts in exact minor units) and `hl7`, the
 * stored message's id and MSH-3/4/7/9/10/12.
 *
 * Identity: sourceId = `<MSH-3>|<MSH-4>|<MSH-10>|<segment index>` (segment index 0-based, MSH = 0), unique
 * because a control id is stored once per sender; versionId = contentHash = SHA-256 of the JSON body (built
 * with a fixed key order, so the same message always hashes the same).
 */
import { createHash } from 'node:crypto';
import { Hl7Message, type Hl7Segment } from '@medplum/core';
import type { SourceRecord } from '../../domain/source-record.ts';
import type { Hl7MessageRecord } from '../../store/hl7-messages.ts';
import { delimitersOf, mshField } from './ack.ts';
import { decodeEscapes, parseMoneyField, type Hl7Charset, type Hl7Delimiters } from './hl7-text.ts';

/** What a stored message must carry to be converted. */
export type ConvertibleHl7Message = Pick<
  Hl7MessageRecord,
  'id' | 'practiceId' | 'connector' | 'controlId' | 'messageType' | 'sendingApplication' | 'sendingFacility' | 'receivedAt' | 'raw' | 'rawBytesCharset'
>;

/** ADT trigger events that register or update a patient. */
export const ADT_PATIENT_EVENTS = ['A01', 'A04', 'A05', 'A08', 'A28', 'A31'] as const;
/** BAR trigger events that add or update an account. */
export const BAR_ACCOUNT_EVENTS = ['P01', 'P05'] as const;

/** HL7 table 0017 transaction types Settle reads, and the kind each is. */
export const TRANSACTION_KINDS = { CG: 'charge', PY: 'payment', AJ: 'adjustment', CD: 'credit' } as const;
export type TransactionKind = (typeof TRANSACTION_KINDS)[keyof typeof TRANSACTION_KINDS];

/** Record kinds, used as the resourceType suffix: `DFT^P03/FT1`, `ADT^A04/PID`, `BAR^P01/PID`. */
export type Hl7RecordKind = 'patient' | 'account' | TransactionKind;

/** A coded element (CE/CWE): identifier ^ text ^ coding system. */
export interface Hl7Coded {
  code: string;
  text: string | null;
  system: string | null;
}

/** An extended composite id (CX): id ^^^ assigning authority ^ type. */
export interface Hl7Identifier {
  value: string;
  assigningAuthority: string | null;
  type: string | null;
}

/** An extended person name (XPN). */
export interface Hl7Name {
  family: string | null;
  given: string | null;
  middle: string | null;
  suffix: string | null;
  prefix: string | null;
}

/** An extended address (XAD). */
export interface Hl7Address {
  line1: string | null;
  line2: string | null;
  city: string | null;
  state: string | null;
  postalCode: string | null;
  country: string | null;
}

/** A telecom number (XTN): the number as sent (XTN-1), or the email (XTN-4). */
export interface Hl7Telecom {
  value: string;
  use: string | null;
  equipment: string | null;
}

/** A person as PID describes them. */
export interface Hl7Patient {
  /** PID-3 repetitions. */
  identifiers: Hl7Identifier[];
  /** PID-5, first repetition. */
  name: Hl7Name | null;
  /** PID-7, `YYYY-MM-DD`. */
  birthDate: string | null;
  /** PID-8. */
  sex: string | null;
  /** PID-11, first repetition. */
  address: Hl7Address | null;
  /** PID-13 (home) and PID-14 (business) repetitions. */
  homeTelecom: Hl7Telecom[];
  businessTelecom: Hl7Telecom[];
  /** PID-15. */
  language: string | null;
  /** PID-18.1: the patient account number. */
  accountNumber: string | null;
}

/** A GT1 segment. */
export interface Hl7Guarantor {
  setId: string | null;
  /** GT1-2. */
  number: Hl7Identifier | null;
  name: Hl7Name | null;
  address: Hl7Address | null;
  homeTelecom: Hl7Telecom[];
  businessTelecom: Hl7Telecom[];
  birthDate: string | null;
  sex: string | null;
  /** GT1-10. */
  type: string | null;
  /** GT1-11 relationship to the patient (`SEL`, `SELF`, `SPO`…). */
  relationship: string | null;
}

/** An IN1 segment. */
export interface Hl7Coverage {
  setId: string | null;
  /** IN1-2. */
  plan: Hl7Coded | null;
  /** IN1-3 and IN1-4. */
  companyId: string | null;
  companyName: string | null;
  /** IN1-8 and IN1-9. */
  groupNumber: string | null;
  groupName: string | null;
  /** IN1-12 and IN1-13, `YYYY-MM-DD`. */
  effectiveDate: string | null;
  expirationDate: string | null;
  /** IN1-15. */
  planType: string | null;
  /** IN1-16 and IN1-17. */
  insuredName: Hl7Name | null;
  insuredRelationship: string | null;
  /** IN1-36. */
  policyNumber: string | null;
}

/** A PV1 segment, as far as balances need it. */
export interface Hl7Visit {
  /** PV1-2. */
  patientClass: string | null;
  /** PV1-19.1. */
  visitNumber: string | null;
  /** PV1-44 and PV1-45, `YYYY-MM-DD`. */
  admitDate: string | null;
  dischargeDate: string | null;
}

/** Where a record came from in HL7. */
export interface Hl7Origin {
  /** Id of the stored message (hl7_messages.id). */
  messageId: string;
  messageType: string;
  controlId: string;
  sendingApplication: string;
  sendingFacility: string;
  /** MSH-7 as sent. */
  messageDateTime: string | null;
  /** MSH-12. */
  version: string | null;
  /** The segment the record stands for (`PID`, `FT1`) and its occurrence among segments of that name (1-based). */
  segment: string;
  occurrence: number;
}

/** What every record body carries for the mapping layer. */
export interface Hl7MessageText {
  /** The message as sent, segments joined by CR. */
  message: string;
  /** 0-based index in `message` of the segment the record stands for (the last part of the sourceId). */
  segmentIndex: number;
}

/** A `patient` record's body (ADT). */
export interface Hl7PatientBody extends Hl7MessageText {
  kind: 'patient';
  event: string;
  patient: Hl7Patient;
  guarantors: Hl7Guarantor[];
  coverages: Hl7Coverage[];
  hl7: Hl7Origin;
}

/** An `account` record's body (BAR). */
export interface Hl7AccountBody extends Hl7MessageText {
  kind: 'account';
  event: string;
  /** PID-18.1. */
  account: string;
  patient: Hl7Patient;
  visits: Hl7Visit[];
  guarantors: Hl7Guarantor[];
  coverages: Hl7Coverage[];
  hl7: Hl7Origin;
}

/** A financial transaction record's body (DFT^P03, one per FT1). */
export interface Hl7TransactionBody extends Hl7MessageText {
  kind: TransactionKind;
  /** FT1-6 as sent (`CG`, `PY`, `AJ`, `CD`). */
  transactionType: string;
  /** FT1-1, FT1-2 and FT1-3. */
  setId: string | null;
  transactionId: string | null;
  batchId: string | null;
  /** PID-18.1. */
  account: string;
  patient: Hl7Patient;
  visit: Hl7Visit | null;
  /** FT1-4.1, the start of the service period, `YYYY-MM-DD`. */
  serviceDate: string | null;
  /** FT1-5, `YYYY-MM-DD`. */
  postingDate: string | null;
  /** FT1-10 (a decimal count of units); 1 when empty. */
  quantity: number;
  /** FT1-11 in integer minor units, with its currency. Sign as sent. */
  amount: { minorUnits: number; currency: string };
  /** FT1-12, when sent. */
  unitAmount: { minorUnits: number; currency: string } | null;
  /**
   * FT1-7 transaction code (a procedure or payment code) and FT1-8 description. Internal: for matching and
   * write-back only, never for outreach text (minimum necessary).
   */
  internal: { transactionCode: Hl7Coded | null; description: string | null };
  guarantors: Hl7Guarantor[];
  hl7: Hl7Origin;
}

/** Any record body this module produces. */
export type Hl7RecordBody = Hl7PatientBody | Hl7AccountBody | Hl7TransactionBody;

/** Why (part of) a message could not be converted. Text names locations, never message content. */
export interface Hl7ConversionProblem {
  code: 'unsupported_message_type' | 'missing_segment' | 'required_field_missing' | 'invalid_value' | 'unknown_transaction_type' | 'unparseable';
  /** ERL-style location: segment, occurrence (1-based), field. */
  location?: { segment: string; occurrence?: number; field?: number };
  message: string;
}

/** The records a message became, and what was left out. */
export interface Hl7Conversion {
  records: SourceRecord[];
  problems: Hl7ConversionProblem[];
}

/** Options of {@link toSourceRecords}. */
export interface ConversionOptions {
  /** Currency of amounts that name none (default USD). */
  defaultCurrency?: string;
}

/**
 * Converts one stored message into source records.
 * @returns the records (for DFT, one per valid FT1) and the problems of what could not be converted: a DFT
 *   whose second FT1 has a bad amount yields the first FT1's record and one problem.
 */
export function toSourceRecords(message: ConvertibleHl7Message, options: ConversionOptions = {}): Hl7Conversion {
  let parsed: Hl7Message;
  try {
    parsed = Hl7Message.parse(message.raw.replace(/^[\r\n ]+/, ''));
    if (parsed.header?.name !== 'MSH') throw new Error('no MSH');
  } catch {
    return { records: [], problems: [{ code: 'unparseable', location: { segment: 'MSH' }, message: 'the stored text is not an HL7 v2 message' }] };
  }
  const reader = new Reader(parsed, message.rawBytesCharset);
  const [type, trigger] = message.messageType.split('^');
  const context = new Context(message, parsed, reader, options.defaultCurrency ?? 'USD');
  if (type === 'ADT' && (ADT_PATIENT_EVENTS as readonly string[]).includes(trigger)) return context.patient(trigger);
  if (type === 'BAR' && (BAR_ACCOUNT_EVENTS as readonly string[]).includes(trigger)) return context.account(trigger);
  if (type === 'DFT' && trigger === 'P03') return context.transactions();
  return {
    records: [],
    problems: [{ code: 'unsupported_message_type', location: { segment: 'MSH', field: 9 }, message: `${message.messageType} does not become source records` }],
  };
}

/** The resourceType of a record: message type and the segment it was built from. */
export function hl7ResourceType(messageType: string, segment: string): string {
  return `${messageType}/${segment}`;
}

/** Reads decoded values out of segments by HL7 position. */
class Reader {
  readonly delimiters: Hl7Delimiters;
  private readonly charset: Hl7Charset;

  constructor(message: Hl7Message, charset: Hl7Charset) {
    this.delimiters = delimitersOf(message);
    this.charset = charset;
  }

  private readonly fields = new Map<Hl7Segment, string[]>();

  /** A field's raw text as sent ('' when absent). Each segment's text is split once. */
  raw(segment: Hl7Segment, field: number): string {
    let fields = this.fields.get(segment);
    if (!fields) {
      fields = segment.toString().split(this.delimiters.field);
      // MSH-1 is the field separator itself: after the split, MSH-n is at n - 1.
      if (segment.name === 'MSH') fields.splice(1, 0, this.delimiters.field);
      this.fields.set(segment, fields);
    }
    if (segment.name === 'MSH' && field < 3) return '';
    return fields[field] ?? '';
  }

  /** The repetitions of a field, raw. */
  repetitions(segment: Hl7Segment, field: number): string[] {
    const raw = this.raw(segment, field);
    return raw === '' ? [] : raw.split(this.delimiters.repetition);
  }

  private readonly split = new Map<string, string[][]>();

  /** Component (1-based) and sub-component (1-based) of one repetition's raw text, decoded; null when empty. */
  part(repetition: string, component = 1, subcomponent = 1): string | null {
    let parts = this.split.get(repetition);
    if (!parts) {
      parts = repetition.split(this.delimiters.component).map((c) => c.split(this.delimiters.subcomponent));
      this.split.set(repetition, parts);
    }
    const s = parts[component - 1]?.[subcomponent - 1] ?? '';
    if (s === '') return null;
    const value = decodeEscapes(s, this.delimiters, this.charset).trim();
    return value === '' || value === '""' ? null : value;
  }

  /** Field (first repetition), component and sub-component, decoded; null when empty. */
  value(segment: Hl7Segment, field: number, component = 1, subcomponent = 1): string | null {
    return this.part(this.repetitions(segment, field)[0] ?? '', component, subcomponent);
  }

  identifier(repetition: string): Hl7Identifier | null {
    const value = this.part(repetition, 1);
    return value === null ? null : { value, assigningAuthority: this.part(repetition, 4), type: this.part(repetition, 5) };
  }

  identifiers(segment: Hl7Segment, field: number): Hl7Identifier[] {
    return this.repetitions(segment, field).map((r) => this.identifier(r)).filter((i): i is Hl7Identifier => i !== null);
  }

  name(repetition: string | undefined): Hl7Name | null {
    if (!repetition) return null;
    const name = { family: this.part(repetition, 1), given: this.part(repetition, 2), middle: this.part(repetition, 3), suffix: this.part(repetition, 4), prefix: this.part(repetition, 5) };
    return Object.values(name).every((v) => v === null) ? null : name;
  }

  address(repetition: string | undefined): Hl7Address | null {
    if (!repetition) return null;
    const address = {
      line1: this.part(repetition, 1),
      line2: this.part(repetition, 2),
      city: this.part(repetition, 3),
      state: this.part(repetition, 4),
      postalCode: this.part(repetition, 5),
      country: this.part(repetition, 6),
    };
    return Object.values(address).every((v) => v === null) ? null : address;
  }

  telecoms(segment: Hl7Segment, field: number): Hl7Telecom[] {
    const out: Hl7Telecom[] = [];
    for (const r of this.repetitions(segment, field)) {
      const value = this.part(r, 1) ?? this.part(r, 4);
      if (value !== null) out.push({ value, use: this.part(r, 2), equipment: this.part(r, 3) });
    }
    return out;
  }

  coded(segment: Hl7Segment, field: number): Hl7Coded | null {
    const r = this.repetitions(segment, field)[0] ?? '';
    const code = this.part(r, 1);
    return code === null ? null : { code, text: this.part(r, 2), system: this.part(r, 3) };
  }

  /** A DT/DTM as `YYYY-MM-DD` (the date as written, no time-zone conversion); null when empty or not a date. */
  date(segment: Hl7Segment, field: number, component = 1): string | null {
    const value = this.value(segment, field, component);
    return value === null ? null : hl7Date(value);
  }
}

/** `YYYYMMDD[HHMM…]` → `YYYY-MM-DD`, or null when it does not start with a valid calendar date. */
export function hl7Date(value: string): string | null {
  const match = /^(\d{4})(\d{2})(\d{2})/.exec(value.trim());
  if (!match) return null;
  const [, y, m, d] = match;
  const date = new Date(Date.UTC(Number(y), Number(m) - 1, Number(d)));
  if (date.getUTCFullYear() !== Number(y) || date.getUTCMonth() !== Number(m) - 1 || date.getUTCDate() !== Number(d)) return null;
  return `${y}-${m}-${d}`;
}

/** MSH-7 (`YYYYMMDD[HH[MM[SS[.S…]]]][+/-ZZZZ]`) as an instant; a time without an offset is read as UTC. */
export function hl7DateTime(value: string): Date | null {
  const match = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?([+-]\d{4})?$/.exec(value.trim());
  if (!match || hl7Date(value) === null) return null;
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac = '', offset] = match;
  const ms = Number(frac.padEnd(3, '0').slice(0, 3));
  let time = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), ms);
  if (offset) {
    const sign = offset[0] === '-' ? -1 : 1;
    time -= sign * (Number(offset.slice(1, 3)) * 60 + Number(offset.slice(3, 5))) * 60_000;
  }
  return Number.isNaN(time) ? null : new Date(time);
}

/** Builds the records of one message. */
class Context {
  private readonly message: ConvertibleHl7Message;
  private readonly parsed: Hl7Message;
  private readonly r: Reader;
  private readonly defaultCurrency: string;
  private readonly segments: Hl7Segment[];
  private readonly msh: Hl7Segment;
  private messageText: string | undefined;

  constructor(message: ConvertibleHl7Message, parsed: Hl7Message, reader: Reader, defaultCurrency: string) {
    this.message = message;
    this.parsed = parsed;
    this.r = reader;
    this.defaultCurrency = defaultCurrency;
    // Blank lines (a trailing CRLF) are no segments; the mapping layer skips them too, so indexes agree.
    this.segments = parsed.segments.filter((s) => s.toString().trim() !== '');
    this.msh = parsed.header;
  }

  private indexOf(segment: Hl7Segment): number {
    return this.segments.indexOf(segment);
  }

  private first(name: string): Hl7Segment | undefined {
    return this.segments.find((s) => s.name === name);
  }

  private all(name: string): Hl7Segment[] {
    return this.segments.filter((s) => s.name === name);
  }

  private origin(segment: Hl7Segment, occurrence: number): Hl7Origin {
    return {
      messageId: this.message.id,
      messageType: this.message.messageType,
      controlId: this.message.controlId,
      sendingApplication: this.message.sendingApplication,
      sendingFacility: this.message.sendingFacility,
      messageDateTime: mshField(this.parsed, 7) || null,
      version: this.r.value(this.msh, 12),
      segment: segment.name,
      occurrence,
    };
  }

  /** `message` and `segmentIndex` of a record standing for `focus`. */
  private text(focus: Hl7Segment): Hl7MessageText {
    this.messageText ??= this.segments.map((s) => s.toString()).join('\r');
    return { message: this.messageText, segmentIndex: this.indexOf(focus) };
  }

  private record(segment: Hl7Segment, body: Hl7RecordBody): SourceRecord {
    // Bodies are built by this module with a fixed key order, so their JSON text is stable across runs.
    const contentHash = createHash('sha256').update(JSON.stringify(body)).digest('hex');
    const msh7 = mshField(this.parsed, 7);
    return {
      practiceId: this.message.practiceId,
      connector: this.message.connector,
      transport: 'hl7v2-mllp',
      resourceType: hl7ResourceType(this.message.messageType, segment.name),
      sourceId: [this.message.sendingApplication, this.message.sendingFacility, this.message.controlId, String(this.indexOf(segment))].join('|'),
      versionId: contentHash,
      lastUpdated: (msh7 ? hl7DateTime(msh7.split(this.r.delimiters.component)[0]) : null) ?? this.message.receivedAt,
      contentHash,
      body,
    };
  }

  private patientOf(pid: Hl7Segment): Hl7Patient {
    const r = this.r;
    return {
      identifiers: r.identifiers(pid, 3),
      name: r.name(r.repetitions(pid, 5)[0]),
      birthDate: r.date(pid, 7),
      sex: r.value(pid, 8),
      address: r.address(r.repetitions(pid, 11)[0]),
      homeTelecom: r.telecoms(pid, 13),
      businessTelecom: r.telecoms(pid, 14),
      language: r.value(pid, 15),
      accountNumber: r.value(pid, 18),
    };
  }

  private guarantorOf(gt1: Hl7Segment): Hl7Guarantor {
    const r = this.r;
    return {
      setId: r.value(gt1, 1),
      number: r.identifier(r.repetitions(gt1, 2)[0] ?? ''),
      name: r.name(r.repetitions(gt1, 3)[0]),
      address: r.address(r.repetitions(gt1, 5)[0]),
      homeTelecom: r.telecoms(gt1, 6),
      businessTelecom: r.telecoms(gt1, 7),
      birthDate: r.date(gt1, 8),
      sex: r.value(gt1, 9),
      type: r.value(gt1, 10),
      relationship: r.value(gt1, 11),
    };
  }

  private coverageOf(in1: Hl7Segment): Hl7Coverage {
    const r = this.r;
    return {
      setId: r.value(in1, 1),
      plan: r.coded(in1, 2),
      companyId: r.value(in1, 3),
      companyName: r.value(in1, 4),
      groupNumber: r.value(in1, 8),
      groupName: r.value(in1, 9),
      effectiveDate: r.date(in1, 12),
      expirationDate: r.date(in1, 13),
      planType: r.value(in1, 15),
      insuredName: r.name(r.repetitions(in1, 16)[0]),
      insuredRelationship: r.value(in1, 17),
      policyNumber: r.value(in1, 36),
    };
  }

  private visitOf(pv1: Hl7Segment): Hl7Visit {
    const r = this.r;
    return { patientClass: r.value(pv1, 2), visitNumber: r.value(pv1, 19), admitDate: r.date(pv1, 44), dischargeDate: r.date(pv1, 45) };
  }

  private missingPid(): Hl7Conversion {
    return { records: [], problems: [{ code: 'missing_segment', location: { segment: 'PID' }, message: `${this.message.messageType} has no PID segment` }] };
  }

  patient(event: string): Hl7Conversion {
    const pid = this.first('PID');
    if (!pid) return this.missingPid();
    const gt1s = this.all('GT1');
    const in1s = this.all('IN1');
    const body: Hl7PatientBody = {
      ...this.text(pid),
      kind: 'patient',
      event,
      patient: this.patientOf(pid),
      guarantors: gt1s.map((s) => this.guarantorOf(s)),
      coverages: in1s.map((s) => this.coverageOf(s)),
      hl7: this.origin(pid, 1),
    };
    return { records: [this.record(pid, body)], problems: [] };
  }

  account(event: string): Hl7Conversion {
    const pid = this.first('PID');
    if (!pid) return this.missingPid();
    const account = this.r.value(pid, 18);
    if (account === null) {
      return { records: [], problems: [{ code: 'required_field_missing', location: { segment: 'PID', occurrence: 1, field: 18 }, message: 'PID-18 patient account number is required' }] };
    }
    const pv1s = this.all('PV1');
    const gt1s = this.all('GT1');
    const in1s = this.all('IN1');
    const body: Hl7AccountBody = {
      ...this.text(pid),
      kind: 'account',
      event,
      account,
      patient: this.patientOf(pid),
      visits: pv1s.map((s) => this.visitOf(s)),
      guarantors: gt1s.map((s) => this.guarantorOf(s)),
      coverages: in1s.map((s) => this.coverageOf(s)),
      hl7: this.origin(pid, 1),
    };
    return { records: [this.record(pid, body)], problems: [] };
  }

  transactions(): Hl7Conversion {
    const pid = this.first('PID');
    if (!pid) return this.missingPid();
    const account = this.r.value(pid, 18);
    if (account === null) {
      return { records: [], problems: [{ code: 'required_field_missing', location: { segment: 'PID', occurrence: 1, field: 18 }, message: 'PID-18 patient account number is required' }] };
    }
    const ft1s = this.all('FT1');
    if (ft1s.length === 0) return { records: [], problems: [{ code: 'missing_segment', location: { segment: 'FT1' }, message: 'DFT^P03 has no FT1 segment' }] };
    const pv1 = this.first('PV1');
    const gt1s = this.all('GT1');
    const patient = this.patientOf(pid);
    const guarantors = gt1s.map((s) => this.guarantorOf(s));
    const records: SourceRecord[] = [];
    const problems: Hl7ConversionProblem[] = [];
    ft1s.forEach((ft1, i) => {
      const occurrence = i + 1;
      const at = (field: number) => ({ segment: 'FT1', occurrence, field });
      const type = this.r.value(ft1, 6);
      if (type === null) {
        problems.push({ code: 'required_field_missing', location: at(6), message: 'FT1-6 transaction type is required' });
        return;
      }
      const kind = TRANSACTION_KINDS[type.toUpperCase() as keyof typeof TRANSACTION_KINDS];
      if (!kind) {
        problems.push({ code: 'unknown_transaction_type', location: at(6), message: `FT1-6 transaction type "${type.slice(0, 8)}" is not CG, PY, AJ or CD` });
        return;
      }
      const amountText = this.r.repetitions(ft1, 11)[0] ?? '';
      if (this.r.part(amountText, 1) === null) {
        problems.push({ code: 'required_field_missing', location: at(11), message: 'FT1-11 transaction amount is required' });
        return;
      }
      let amount: Hl7TransactionBody['amount'];
      let unitAmount: Hl7TransactionBody['unitAmount'] = null;
      let quantity = 1;
      try {
        amount = parseMoneyField(amountText, this.r.delimiters, this.defaultCurrency);
      } catch (error) {
        problems.push({ code: 'invalid_value', location: at(11), message: `FT1-11: ${(error as Error).message}` });
        return;
      }
      const unitText = this.r.repetitions(ft1, 12)[0] ?? '';
      if (this.r.part(unitText, 1) !== null) {
        try {
          unitAmount = parseMoneyField(unitText, this.r.delimiters, this.defaultCurrency);
        } catch (error) {
          problems.push({ code: 'invalid_value', location: at(12), message: `FT1-12: ${(error as Error).message}` });
          return;
        }
      }
      const quantityText = this.r.value(ft1, 10);
      if (quantityText !== null) {
        if (!/^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$/.test(quantityText)) {
          problems.push({ code: 'invalid_value', location: at(10), message: 'FT1-10 transaction quantity is not a number' });
          return;
        }
        quantity = Number(quantityText);
      }
      const body: Hl7TransactionBody = {
        ...this.text(ft1),
        kind,
        transactionType: type.toUpperCase(),
        setId: this.r.value(ft1, 1),
        transactionId: this.r.value(ft1, 2),
        batchId: this.r.value(ft1, 3),
        account,
        patient,
        visit: pv1 ? this.visitOf(pv1) : null,
        serviceDate: this.r.date(ft1, 4),
        postingDate: this.r.date(ft1, 5),
        quantity,
        amount,
        unitAmount,
        internal: { transactionCode: this.r.coded(ft1, 7), description: this.r.value(ft1, 8) },
        guarantors,
        hl7: this.origin(ft1, occurrence),
      };
      records.push(this.record(ft1, body));
    });
    return { records, problems };
  }
}
