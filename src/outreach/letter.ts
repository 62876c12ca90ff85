/**
 * The printed statement: one PDF page per letter, made with pdfkit, in English or Spanish.
 *
 * A page carries the practice's letterhead (name, phone, address when known), the statement date and account
 * reference, the guarantor's first name and mailing address where a #10 window envelope shows it, the amount
 * due, an aging summary (current, 31–60, 61–90, over 90 days), the statement lines, the pay URL with its QR
 * code, and a remittance stub to detach and return with a check.
 *
 * Minimum necessary, by construction: a statement line is a date, a kind and an amount. The renderer has no
 * field for a service code or description, so every charge prints as "Medical services" ("Servicios médicos")
 * whatever the ledger holds.
 */
import { PassThrough, type Writable } from 'node:stream';
import { crc32, deflateSync } from 'node:zlib';
import PDFDocument from 'pdfkit';
import QRCode from 'qrcode';
import { DateTime } from 'luxon';
import type { Clock } from '../domain/clock.ts';
import { ageItems, type EntryKind } from '../domain/ledger.ts';
import type { Money } from '../domain/money.ts';
import { chooseLanguage, type Language } from '../domain/outreach.ts';
import type { Database, Queryable } from '../store/database.ts';
import { LedgerRepository } from '../store/ledger.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import { formatAmount, formatDate } from './templates.ts';

/** One line of a statement: never a code or description, only what kind of item it was. */
export interface StatementLine {
  /** `YYYY-MM-DD` (service date of a charge, date of a payment or adjustment). */
  date: string;
  kind: EntryKind;
  /** Signed effect on what the patient owes, in minor units (charges positive, payments and adjustments negative). */
  amountCents: number;
}

/** What the patient owes by age, in minor units. */
export interface StatementAging {
  current: number;
  days31to60: number;
  days61to90: number;
  over90: number;
}

/** Everything one printed statement shows. */
export interface StatementInput {
  language: Language;
  practice: {
    name: string;
    phone: string | null;
    /** Mailing address lines of the practice (the remittance address), when known. */
    address?: readonly string[];
  };
  /** `YYYY-MM-DD`. */
  statementDate: string;
  /** `YYYY-MM-DD`, printed as "Please pay by" when given. */
  dueDate?: string | null;
  recipient: {
    /** Guarantor's first name, or null (then the address block starts with the address). */
    firstName: string | null;
    /** Mailing address as printed lines (street lines, `City, ST 12345`, country). */
    addressLines: readonly string[];
  };
  /** Short reference the practice matches a returned stub with (see {@link accountReference}). */
  accountReference: string;
  amountDue: Money;
  aging: StatementAging;
  lines: readonly StatementLine[];
  /** The pay link (printed and encoded in the QR code). */
  payUrl: string;
  /** The cadence step's letter text (heading and body), printed above the summary. */
  message?: { heading: string | null; body: string } | undefined;
}

const TEXT = {
  en: {
    statement: 'Statement', statementDate: 'Statement date', account: 'Account reference', amountDue: 'Amount due', payBy: 'Please pay by',
    phone: 'Phone', dear: (n: string | null) => (n ? `Dear ${n},` : 'Hello,'),
    aging: 'Account aging', current: 'Current', d31: '31–60 days', d61: '61–90 days', d90: 'Over 90 days',
    activity: 'Statement activity', date: 'Date', description: 'Description', amount: 'Amount', earlier: 'Earlier activity',
    kinds: { charge: 'Medical services', payment: 'Payment — thank you', adjustment: 'Adjustment' } as Record<EntryKind, string>,
    payOnline: 'Pay online', scan: 'Scan the code with your phone camera, or type the address below:',
    questions: (p: string | null) => (p ? `Questions about your bill? Call ${p}.` : 'Questions about your bill? Call our office.'),
    detach: 'Please detach and return this portion with your payment',
    enclosed: 'Amount enclosed', payable: 'Make checks payable to', remitTo: 'Mail to',
  },
  es: {
    statement: 'Estado de cuenta', statementDate: 'Fecha del estado de cuenta', account: 'Referencia de cuenta', amountDue: 'Saldo a pagar', payBy: 'Pague antes del',
    phone: 'Teléfono', dear: (n: string | null) => (n ? `Estimado/a ${n}:` : 'Hola:'),
    aging: 'Antigüedad del saldo', current: 'Al día', d31: '31–60 días', d61: '61–90 días', d90: 'Más de 90 días',
    activity: 'Movimientos', date: 'Fecha', description: 'Descripción', amount: 'Importe', earlier: 'Movimientos anteriores',
    kinds: { charge: 'Servicios médicos', payment: 'Pago — gracias', adjustment: 'Ajuste' } as Record<EntryKind, string>,
    payOnline: 'Pague en línea', scan: 'Escanee el código con la cámara de su teléfono o escriba la dirección:',
    questions: (p: string | null) => (p ? `¿Preguntas sobre su factura? Llame al ${p}.` : '¿Preguntas sobre su factura? Llame a nuestra oficina.'),
    detach: 'Separe y devuelva esta parte con su pago',
    enclosed: 'Importe adjunto', payable: 'Cheques a nombre de', remitTo: 'Envíe a',
  },
} as const;

/** Most statement lines shown on a page; older ones are summed into one "Earlier activity" line. */
export const MAX_STATEMENT_LINES = 12;

const PAGE = { width: 612, height: 792 };
const LEFT = 54;
const RIGHT = PAGE.width - 54;
/** Top of the remittance stub (the tear line). */
const STUB_TOP = 600;

/**
 * Renders one statement.
 * @returns the PDF (one page).
 */
export async function renderStatementPdf(input: StatementInput): Promise<Buffer> {
  return renderStatementsPdf([input]);
}

/**
 * Renders statements into one PDF, one page each (a print batch).
 * @param out - when given, the PDF is streamed there and the returned Buffer is empty (large batches).
 * @returns the PDF.
 */
export async function renderStatementsPdf(inputs: readonly StatementInput[], out?: Writable): Promise<Buffer> {
  if (inputs.length === 0) throw new RangeError('a statement PDF needs at least one statement');
  for (const [i, input] of inputs.entries()) checkInput(input, inputs.length > 1 ? `statement ${i + 1}: ` : '');
  const doc = new PDFDocument({ size: 'LETTER', margin: 0, autoFirstPage: false, info: { Title: 'Statement', Producer: 'Settle', Creator: 'Settle' } });
  const chunks: Buffer[] = [];
  const sink = out ?? new PassThrough();
  if (!out) sink.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((resolve, reject) => {
    // Our own stream is done when its last chunk was read ('end'); a caller's when all was written ('finish').
    sink.on(out ? 'finish' : 'end', resolve);
    sink.on('error', reject);
    doc.on('error', reject);
  });
  doc.pipe(sink);
  for (const input of inputs) {
    const qr = qrCodePng(input.payUrl);
    doc.addPage({ size: 'LETTER', margin: 0 });
    drawStatement(doc, input, qr);
  }
  doc.end();
  await done;
  return Buffer.concat(chunks);
}

/** Pixels per QR module in the PNG (the PDF scales it; printers keep the edges sharp). */
const QR_MODULE_PX = 4;
/** Quiet zone around the code, in modules (the standard asks for 4; the white page margin adds to it). */
const QR_MARGIN = 2;

/**
 * The pay URL as a QR code: an 8-bit grayscale PNG drawn straight from the `qrcode` matrix (its own PNG
 * renderer took ~60 ms a code, most of a letter's rendering time in a print batch).
 */
export function qrCodePng(text: string): Buffer {
  const { modules } = QRCode.create(text, { errorCorrectionLevel: 'M' });
  const side = (modules.size + 2 * QR_MARGIN) * QR_MODULE_PX;
  const raw = Buffer.alloc((side + 1) * side, 0xff);
  for (let y = 0; y < side; y++) {
    raw[y * (side + 1)] = 0; // filter: none
    const my = Math.floor(y / QR_MODULE_PX) - QR_MARGIN;
    if (my < 0 || my >= modules.size) continue;
    for (let x = 0; x < side; x++) {
      const mx = Math.floor(x / QR_MODULE_PX) - QR_MARGIN;
      if (mx >= 0 && mx < modules.size && modules.get(my, mx)) raw[y * (side + 1) + 1 + x] = 0;
    }
  }
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body) >>> 0, 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(side, 0);
  header.writeUInt32BE(side, 4);
  header[8] = 8; // bit depth
  header[9] = 0; // grayscale
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0)),
  ]);
}

function checkInput(input: StatementInput, where: string): void {
  if (!Number.isSafeInteger(input.amountDue.amount)) throw new RangeError(`${where}amountDue is not a whole number of minor units`);
  if (!/^https?:\/\//.test(input.payUrl)) throw new RangeError(`${where}payUrl must be an absolute http(s) URL`);
  if (!DateTime.fromISO(input.statementDate).isValid) throw new RangeError(`${where}statementDate "${input.statementDate}" is not a YYYY-MM-DD date`);
  for (const [i, line] of input.lines.entries()) {
    if (!Number.isSafeInteger(line.amountCents)) throw new RangeError(`${where}lines[${i}].amountCents is not a whole number of minor units`);
  }
}

type Doc = PDFKit.PDFDocument;

function drawStatement(doc: Doc, input: StatementInput, qr: Buffer): void {
  const t = TEXT[input.language];
  const money = (cents: number) => formatAmount(cents, input.language, input.amountDue.currency);
  const date = (iso: string) => formatDate(iso, input.language);
  const one = { lineBreak: false } as const;

  // Letterhead.
  doc.font('Helvetica-Bold').fontSize(15).fillColor('#000').text(input.practice.name, LEFT, 48, { width: 300 });
  doc.font('Helvetica').fontSize(9);
  for (const line of input.practice.address ?? []) doc.text(line, { width: 300 });
  if (input.practice.phone) doc.text(`${t.phone}: ${input.practice.phone}`, { width: 300 });

  // Statement box, top right.
  const boxX = 330;
  doc.font('Helvetica-Bold').fontSize(14).text(t.statement, boxX, 48, { width: RIGHT - boxX, align: 'right' });
  doc.font('Helvetica').fontSize(9);
  const facts: [string, string][] = [
    [t.statementDate, date(input.statementDate)],
    [t.account, input.accountReference],
    ...(input.dueDate ? [[t.payBy, date(input.dueDate)] as [string, string]] : []),
  ];
  let y = 72;
  for (const [label, value] of facts) {
    doc.text(label, boxX, y, { width: 140, ...one });
    doc.text(value, boxX + 140, y, { width: RIGHT - boxX - 140, align: 'right', ...one });
    y += 13;
  }
  doc.rect(boxX, y + 2, RIGHT - boxX, 30).lineWidth(1).stroke();
  doc.font('Helvetica-Bold').fontSize(10).text(t.amountDue, boxX + 8, y + 13, { width: 100, ...one });
  doc.fontSize(14).text(money(input.amountDue.amount), boxX + 100, y + 10, { width: RIGHT - boxX - 108, align: 'right', ...one });

  // Recipient block, where a #10 window envelope shows it (about 2" from the top, 7/8" from the left).
  doc.font('Helvetica').fontSize(10);
  const recipientLines = [...(input.recipient.firstName ? [input.recipient.firstName] : []), ...input.recipient.addressLines];
  doc.text(recipientLines.join('\n'), 72, 144, { width: 250, height: 64, ellipsis: true });

  // The letter text.
  y = 222;
  if (input.message?.heading) {
    doc.font('Helvetica-Bold').fontSize(11).text(input.message.heading, LEFT, y, { width: RIGHT - LEFT });
    y = doc.y + 4;
  }
  const body = input.message?.body ?? `${t.dear(input.recipient.firstName)}\n\n${t.questions(input.practice.phone)}`;
  doc.font('Helvetica').fontSize(9.5).text(body, LEFT, y, { width: RIGHT - LEFT, height: 96, ellipsis: true, lineGap: 1 });
  y = Math.max(doc.y + 8, 290);

  // Aging summary.
  doc.font('Helvetica-Bold').fontSize(9).text(t.aging, LEFT, y, one);
  y += 12;
  const cells: [string, number][] = [[t.current, input.aging.current], [t.d31, input.aging.days31to60], [t.d61, input.aging.days61to90], [t.d90, input.aging.over90]];
  const cellW = (RIGHT - LEFT) / cells.length;
  for (const [i, [label, cents]] of cells.entries()) {
    const x = LEFT + i * cellW;
    doc.rect(x, y, cellW, 30).lineWidth(0.5).stroke();
    doc.font('Helvetica').fontSize(8).text(label, x + 4, y + 4, { width: cellW - 8, ...one });
    doc.font('Helvetica-Bold').fontSize(10).text(money(cents), x + 4, y + 16, { width: cellW - 8, align: 'right', ...one });
  }
  y += 40;

  // Statement lines (newest last; older ones folded into one line).
  doc.font('Helvetica-Bold').fontSize(9).text(t.activity, LEFT, y, one);
  y += 13;
  const colDate = LEFT;
  const colDesc = LEFT + 90;
  const colAmount = RIGHT - 100;
  doc.font('Helvetica-Bold').fontSize(8);
  doc.text(t.date, colDate, y, one).text(t.description, colDesc, y, one).text(t.amount, colAmount, y, { width: 100, align: 'right', ...one });
  y += 11;
  doc.moveTo(LEFT, y).lineTo(RIGHT, y).lineWidth(0.5).stroke();
  y += 3;
  // As many lines as fit above the pay box (at most MAX_STATEMENT_LINES), one of them kept for "Earlier activity".
  const payTop = STUB_TOP - 98;
  const room = Math.max(2, Math.min(MAX_STATEMENT_LINES, Math.floor((payTop - 4 - y) / 11)));
  const shown = input.lines.length <= room ? input.lines : input.lines.slice(-(room - 1));
  const folded = input.lines.slice(0, input.lines.length - shown.length);
  const rows: [string, string, number][] = [];
  if (folded.length > 0) rows.push(['', t.earlier, folded.reduce((s, l) => s + l.amountCents, 0)]);
  for (const line of shown) rows.push([date(line.date), t.kinds[line.kind], line.amountCents]);
  doc.font('Helvetica').fontSize(8.5);
  for (const [d, label, cents] of rows) {
    doc.text(d, colDate, y, one).text(label, colDesc, y, one).text(money(cents), colAmount, y, { width: 100, align: 'right', ...one });
    y += 11;
  }

  // Pay online: QR code and URL, above the stub.
  doc.image(qr, RIGHT - 84, payTop, { width: 84, height: 84 });
  doc.font('Helvetica-Bold').fontSize(11).text(t.payOnline, LEFT, payTop + 6, one);
  doc.font('Helvetica').fontSize(9).text(t.scan, LEFT, payTop + 24, { width: RIGHT - LEFT - 100 });
  doc.font('Helvetica-Bold').fontSize(10).fillColor('#0b3d91').text(input.payUrl, LEFT, payTop + 40, { width: RIGHT - LEFT - 100, link: input.payUrl });
  doc.fillColor('#000').font('Helvetica').fontSize(9).text(t.questions(input.practice.phone), LEFT, payTop + 64, { width: RIGHT - LEFT - 100 });

  // Remittance stub.
  doc.moveTo(LEFT - 18, STUB_TOP).lineTo(RIGHT + 18, STUB_TOP).dash(4, { space: 3 }).lineWidth(0.75).stroke().undash();
  doc.font('Helvetica-Oblique').fontSize(8).text(t.detach, LEFT, STUB_TOP + 6, { width: RIGHT - LEFT, align: 'center', ...one });
  let sy = STUB_TOP + 26;
  doc.font('Helvetica-Bold').fontSize(11).text(input.practice.name, LEFT, sy, { width: 260, ...one });
  doc.font('Helvetica').fontSize(9);
  const stubFacts: [string, string][] = [
    [t.account, input.accountReference],
    [t.statementDate, date(input.statementDate)],
    [t.amountDue, money(input.amountDue.amount)],
    [t.enclosed, '$ ______________'],
  ];
  let fy = sy;
  for (const [label, value] of stubFacts) {
    doc.font('Helvetica').text(label, 340, fy, { width: 120, ...one });
    doc.font('Helvetica-Bold').text(value, 460, fy, { width: RIGHT - 460, align: 'right', ...one });
    fy += 15;
  }
  sy += 18;
  doc.font('Helvetica').fontSize(9).text(`${t.payable}: ${input.practice.name}`, LEFT, sy, { width: 270 });
  if (input.practice.address && input.practice.address.length > 0) {
    doc.text(`${t.remitTo}:`, LEFT, doc.y + 4, { width: 270 });
    for (const line of input.practice.address) doc.text(line, { width: 270 });
  }
  doc.font('Helvetica').fontSize(9).text(recipientLines.join('\n'), LEFT, 700, { width: 260, height: 60, ellipsis: true });
}

/* ---------------------------------------------------------------- from the ledger */

/** The remittance reference of a balance: the first 8 hex digits of its id, upper case (no patient data). */
export function accountReference(balanceId: string): string {
  return balanceId.replace(/-/g, '').slice(0, 8).toUpperCase();
}

/** What {@link loadStatementInput} needs. */
export interface StatementSource {
  db: Database | { pool: Queryable };
  cipher: PhiCipher;
  clock: Clock;
  balanceId: string;
  payUrl: string;
  /** Default: the guarantor's (or patient's) language, else English. */
  language?: Language;
  /** Default: the guarantor's address on file. */
  addressLines?: readonly string[];
  message?: StatementInput['message'];
  /** Default: the guarantor's first name on file. */
  firstName?: string | null;
}

/**
 * Builds a balance's statement from the ledger as it stands at the clock's now: amount due, aging (first-in
 * first-out, as the ledger ages), and one line per date and kind of the patient's share. Codes and
 * descriptions in the ledger are not carried over.
 * @returns undefined when there is no such balance.
 */
export async function loadStatementInput(source: StatementSource): Promise<StatementInput | undefined> {
  const ledger = new LedgerRepository(source.db.pool, source.cipher, source.clock);
  const balance = await ledger.getBalance(source.balanceId);
  if (!balance) return undefined;
  const practice = await new PracticeRepository(source.db.pool).findById(balance.practiceId);
  if (!practice) return undefined;
  const today = await ledger.today(balance.practiceId);
  const contact = await ledger.getGuarantorContact(balance.guarantorId);
  const patient = !contact?.language && balance.patientId ? await ledger.getPatient(balance.patientId) : undefined;
  const entries = (await ledger.entries(balance.id)).filter((e) => e.payer === 'patient');
  const byLine = new Map<string, StatementLine>();
  const byDate = new Map<string, number>();
  for (const entry of entries) {
    const key = `${entry.serviceDate}|${entry.kind}`;
    const line = byLine.get(key) ?? { date: entry.serviceDate, kind: entry.kind, amountCents: 0 };
    line.amountCents += entry.effect;
    byLine.set(key, line);
    byDate.set(entry.serviceDate, (byDate.get(entry.serviceDate) ?? 0) + entry.effect);
  }
  const order: Record<EntryKind, number> = { charge: 0, adjustment: 1, payment: 2 };
  const lines = [...byLine.values()]
    .filter((l) => l.amountCents !== 0)
    .sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : order[a.kind] - order[b.kind]));
  const aged = ageItems([...byDate].map(([date, effect]) => ({ date, effect })), today).buckets;
  const address = contact?.address;
  const cityLine = address ? [address.city, [address.state, address.postalCode].filter(Boolean).join(' ')].filter(Boolean).join(', ') : '';
  const addressLines = source.addressLines ?? (address ? [...(address.lines ?? []), cityLine, address.country ?? ''].filter((s) => s.trim() !== '') : []);
  return {
    language: source.language ?? chooseLanguage(contact?.language ?? patient?.language),
    practice: { name: practice.name, phone: practice.phone },
    statementDate: today,
    recipient: { firstName: source.firstName !== undefined ? source.firstName : (contact?.name?.given?.[0] ?? null), addressLines },
    accountReference: accountReference(balance.id),
    amountDue: balance.patientAmount,
    aging: { current: aged['0-30'], days31to60: aged['31-60'], days61to90: aged['61-90'], over90: aged['91-120'] + aged['120+'] },
    lines,
    payUrl: source.payUrl,
    ...(source.message ? { message: source.message } : {}),
  };
}
