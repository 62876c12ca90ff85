/**
 * HL7 v2 paths (`PID-18`, `FT1-11.1.1`, `PID-3[2].1`) and the record accessor mappings read them through.
 * An HL7-origin source record's body is `{ message: string, segmentIndex?: number }`: the raw message, and
 * (for records that stand for one segment, like one FT1 of a DFT^P03) the 0-based index of that segment.
 */
import { Hl7Message, type Hl7Segment } from '@medplum/core';

/** A parsed HL7 path. Numbers are 1-based, as HL7 writes them. */
export interface Hl7Path {
  text: string;
  segment: string;
  field: number;
  /** 1-based repetition; absent means the first. */
  repetition?: number;
  component?: number;
  subcomponent?: number;
}

const PATH = /^([A-Z][A-Z0-9]{2})-([1-9][0-9]*)(?:\[([1-9][0-9]*)\])?(?:\.([1-9][0-9]*))?(?:\.([1-9][0-9]*))?$/;

/** Parses `SEG-field[rep].component.subcomponent`; undefined when the text is not such a path. */
export function parseHl7Path(text: string): Hl7Path | undefined {
  const match = PATH.exec(text);
  if (!match) return undefined;
  const [, segment, field, repetition, component, subcomponent] = match;
  return {
    text,
    segment: segment!,
    field: Number(field),
    ...(repetition ? { repetition: Number(repetition) } : {}),
    ...(component ? { component: Number(component) } : {}),
    ...(subcomponent ? { subcomponent: Number(subcomponent) } : {}),
  };
}

/** The body of an HL7-origin source record. */
export interface Hl7RecordBody {
  message: string;
  segmentIndex?: number;
}

/** Whether a record body is an HL7 body. */
export function isHl7Body(body: unknown): body is Hl7RecordBody {
  return typeof body === 'object' && body !== null && typeof (body as Hl7RecordBody).message === 'string';
}

/** One parsed HL7 message, read by path. */
export class Hl7Record {
  readonly message: Hl7Message;
  /** The segment the record stands for, when it stands for one. */
  readonly focus: Hl7Segment | undefined;
  readonly focusOrdinal: number | undefined;

  constructor(body: Hl7RecordBody) {
    // Segments may be separated by \r (the standard), \n or \r\n (files, some senders).
    const text = body.message.split(/\r\n|\r|\n/).filter((line) => line.trim() !== '').join('\r');
    this.message = Hl7Message.parse(text);
    if (body.segmentIndex !== undefined) {
      const segment = this.message.getSegment(body.segmentIndex);
      if (!segment) throw new Error(`the message has no segment ${body.segmentIndex}`);
      this.focus = segment;
      this.focusOrdinal = this.message.segments.slice(0, body.segmentIndex + 1).filter((s) => s.name === segment.name).length;
    }
  }

  /** The segments a `forEach` names: the focus segment alone when the record stands for one of that name. */
  segments(name: string): { segment: Hl7Segment; ordinal: number }[] {
    if (this.focus && this.focus.name === name) return [{ segment: this.focus, ordinal: this.focusOrdinal! }];
    return this.message.getAllSegments(name).map((segment, index) => ({ segment, ordinal: index + 1 }));
  }

  /**
   * The value at a path: from `current` when it is a segment of the path's name (inside a `forEach`), else
   * from the focus segment, else from the first segment of that name. Escapes are decoded; empty is undefined.
   * A path without component reads the first component; without subcomponent, the first subcomponent.
   */
  get(path: Hl7Path, current?: Hl7Segment): string | undefined {
    const segment =
      current?.name === path.segment ? current : this.focus?.name === path.segment ? this.focus : this.message.getSegment(path.segment);
    if (!segment) return undefined;
    const field = segment.getField(path.field);
    if (!field) return undefined;
    const raw = field.getComponent(path.component ?? 1, (path.subcomponent ?? 1) - 1, (path.repetition ?? 1) - 1);
    const value = unescapeHl7(raw ?? '').trim();
    return value === '' || value === '""' ? undefined : value;
  }
}

/** Decodes the HL7 escape sequences \F\ \S\ \T\ \R\ \E\ and \Xhh..\. */
export function unescapeHl7(text: string): string {
  if (!text.includes('\\')) return text;
  return text.replace(/\\([FSTRE]|X[0-9A-Fa-f]+|\.br)\\/g, (_all, code: string) => {
    switch (code) {
      case 'F': return '|';
      case 'S': return '^';
      case 'T': return '&';
      case 'R': return '~';
      case 'E': return '\\';
      case '.br': return '\n';
      default: return Buffer.from(code.slice(1), 'hex').toString('latin1');
    }
  });
}
