/**
 * Building original-mode acknowledgements (ACK): MSA-1 AA/AE/AR, MSA-2 echoing MSH-10, sender and receiver
 * swapped, and for AE/AR an ERR segment with an HL7 table 0357 code and the location of the problem.
 */
import { randomUUID } from 'node:crypto';
import { Hl7Message } from '@medplum/core';
import { DEFAULT_DELIMITERS, escapeHl7, type Hl7Delimiters } from './hl7-text.ts';

/** MSA-1 in original mode. */
export type AckCode = 'AA' | 'AE' | 'AR';

/** HL7 table 0357 message error condition codes used by Settle. */
export const Hl7ErrorCode = {
  segmentSequenceError: 100,
  requiredFieldMissing: 101,
  dataTypeError: 102,
  tableValueNotFound: 103,
  unsupportedMessageType: 200,
  unsupportedEventCode: 201,
  unsupportedProcessingId: 202,
  unsupportedVersionId: 203,
  applicationInternalError: 207,
} as const;
export type Hl7ErrorCodeValue = (typeof Hl7ErrorCode)[keyof typeof Hl7ErrorCode];

const ERROR_TEXT: Record<Hl7ErrorCodeValue, string> = {
  100: 'Segment sequence error',
  101: 'Required field missing',
  102: 'Data type error',
  103: 'Table value not found',
  200: 'Unsupported message type',
  201: 'Unsupported event code',
  202: 'Unsupported processing id',
  203: 'Unsupported version id',
  207: 'Application internal error',
};

/** Where a problem is: ERR-2 (ERL) segment ID ^ segment sequence ^ field position. */
export interface ErrorLocation {
  segment: string;
  /** 1 for the first occurrence of the segment. */
  sequence?: number;
  field?: number;
}

/** The ERR segment of an AE/AR. */
export interface AckError {
  code: Hl7ErrorCodeValue;
  location?: ErrorLocation;
  /** A diagnostic for the sender (ERR-8). Never message content. */
  text?: string;
}

/** What an ACK is built from. */
export interface AckInput {
  code: AckCode;
  /** The message being acknowledged; undefined when it could not be parsed. */
  message?: Hl7Message;
  /** MSA-2 when there is no parsed message (e.g. read from the head of an oversize frame). */
  controlId?: string;
  error?: AckError;
  /** When the ACK is created (MSH-7). */
  now: Date;
  /** MSH-10 of the ACK; a fresh random id when omitted. */
  ackControlId?: string;
}

/**
 * A new 20-character control id: 80 random bits in hex, taken from a version 4 UUID around its fixed version and
 * variant digits (randomUUID draws its entropy in bulk: a quarter of the cost of randomBytes per ACK).
 */
export function newControlId(): string {
  const uuid = randomUUID(); // xxxxxxxx-xxxx-4xxx-vxxx-xxxxxxxxxxxx
  return uuid.slice(0, 8) + uuid.slice(9, 13) + uuid.slice(15, 18) + uuid.slice(20, 23) + uuid.slice(24, 26);
}

/** HL7 DTM in UTC to the millisecond: `YYYYMMDDHHMMSS.SSS+0000`. */
export function hl7Timestamp(date: Date): string {
  const iso = date.toISOString(); // 2026-11-28T16:51:04.123Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 23)}+0000`;
}

/** The delimiters a parsed message declared. */
export function delimitersOf(message: Hl7Message | undefined): Hl7Delimiters {
  if (!message) return DEFAULT_DELIMITERS;
  const c = message.context;
  return {
    field: c.fieldSeparator,
    component: c.componentSeparator,
    repetition: c.repetitionSeparator,
    escape: c.escapeCharacter,
    subcomponent: c.subcomponentSeparator,
  };
}

/** Text of MSH-n (n ≥ 3) as sent, or '' when absent. */
export function mshField(message: Hl7Message, n: number): string {
  return message.header?.getField(n)?.toString() ?? '';
}

/**
 * Builds the ACK text (segments separated by CR, no trailing CR) in the delimiters of the acknowledged
 * message: MSH with sender (MSH-3/4) and receiver (MSH-5/6) swapped, MSH-9 `ACK^<trigger>^ACK`, a new MSH-10,
 * the message's MSH-11, MSH-12 and MSH-18; MSA-1 and MSA-2 = the message's MSH-10; for AE/AR, ERR-2
 * location, ERR-3 `code^text^HL70357`, ERR-4 severity E and ERR-8 the diagnostic.
 */
export function buildAck(input: AckInput): string {
  const message = input.message;
  const d = delimitersOf(message);
  const f = (n: number) => (message ? mshField(message, n) : '');
  const trigger = message?.header?.getComponent(9, 2) ?? '';
  const controlId = message ? f(10) : escapeHl7(input.controlId ?? '', d);
  const msh = [
    'MSH',
    `${d.component}${d.repetition}${d.escape}${d.subcomponent}`,
    f(5) || 'SETTLE',
    f(6),
    f(3),
    f(4),
    hl7Timestamp(input.now),
    '',
    ['ACK', trigger, 'ACK'].join(d.component),
    input.ackControlId ?? newControlId(),
    f(11) || 'P',
    f(12) || '2.5.1',
  ];
  const charset = f(18);
  if (charset) msh.push('', '', '', '', '', charset);
  const segments = [msh.join(d.field), ['MSA', input.code, controlId].join(d.field)];
  if (input.error && input.code !== 'AA') segments.push(errSegment(input.error, d));
  return segments.join('\r');
}

function errSegment(error: AckError, d: Hl7Delimiters): string {
  const location = error.location
    ? [error.location.segment, error.location.sequence ?? 1, error.location.field ?? ''].join(d.component).replace(new RegExp(`${escapeRegExp(d.component)}+$`), '')
    : '';
  const code = [String(error.code), ERROR_TEXT[error.code], 'HL70357'].join(d.component);
  return ['ERR', '', location, code, 'E', '', '', '', escapeHl7(error.text ?? '', d)].join(d.field).replace(new RegExp(`${escapeRegExp(d.field)}+$`), '');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Parses an ACK (for tests and the MLLP sender): MSA-1, MSA-2 and the ERR-3 code, when present. */
export function readAck(text: string): { code: string; controlId: string; errorCode?: number; errorLocation?: string } {
  const ack = Hl7Message.parse(text);
  const msa = ack.getSegment('MSA');
  const err = ack.getSegment('ERR');
  const errorCode = err ? Number(err.getComponent(3, 1)) : undefined;
  return {
    code: msa?.getField(1)?.toString() ?? '',
    controlId: msa?.getField(2)?.toString() ?? '',
    ...(errorCode !== undefined && !Number.isNaN(errorCode) ? { errorCode } : {}),
    ...(err ? { errorLocation: err.getField(2)?.toString() } : {}),
  };
}
