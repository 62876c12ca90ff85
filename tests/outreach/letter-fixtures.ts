/** Shared pieces of the letter and print-batch tests: poppler tools, and a guarantor with a balance and an address. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clock } from '../../src/domain/clock.ts';
import type { PersonContact } from '../../src/domain/contact.ts';
import type { LedgerLine } from '../../src/domain/ledger.ts';
import { parseMoney } from '../../src/domain/money.ts';
import { withTransaction, type Database } from '../../src/store/database.ts';
import { LedgerRepository } from '../../src/store/ledger.ts';
import type { PhiCipher } from '../../src/store/phi-crypto.ts';

/** Why the poppler tools cannot be used, or undefined when `pdftotext`, `pdfinfo` and `pdfimages` run. */
export const popplerMissing: string | undefined = ['pdftotext', 'pdfinfo', 'pdfimages'].some((tool) => spawnSync(tool, ['-v']).error)
  ? 'poppler-utils (pdftotext, pdfinfo, pdfimages) is not installed: apt-get install poppler-utils'
  : undefined;

function withPdf<T>(pdf: Buffer, run: (file: string) => T): T {
  const file = join(mkdtempSync(join(tmpdir(), 'settle-pdf-')), 'statement.pdf');
  writeFileSync(file, pdf);
  return run(file);
}

/** The PDF's text, as `pdftotext -layout` reads it. */
export function pdfText(pdf: Buffer): string {
  return withPdf(pdf, (file) => spawnSync('pdftotext', ['-layout', file, '-'], { encoding: 'utf8' }).stdout);
}

/** The PDF's page count, from `pdfinfo`. */
export function pdfPages(pdf: Buffer): number {
  return withPdf(pdf, (file) => Number(/^Pages:\s+(\d+)/m.exec(spawnSync('pdfinfo', [file], { encoding: 'utf8' }).stdout)?.[1]));
}

/** The images of a PDF (page and pixel size), from `pdfimages -list`. */
export function pdfImages(pdf: Buffer): { page: number; width: number; height: number; type: string }[] {
  const listing = withPdf(pdf, (file) => spawnSync('pdfimages', ['-list', file], { encoding: 'utf8' }).stdout);
  return listing.split('\n').slice(2).filter((l) => l.trim() !== '').map((l) => {
    const [page, , type, width, height] = l.trim().split(/\s+/);
    return { page: Number(page), type: type!, width: Number(width), height: Number(height) };
  });
}

/** The first image of a PDF, read pixel by pixel (`pdfimages` writes it as a PGM or PPM; the first channel is read). */
export function pdfFirstImage(pdf: Buffer): { width: number; height: number; pixel(x: number, y: number): number } | undefined {
  return withPdf(pdf, (file) => {
    const dir = mkdtempSync(join(tmpdir(), 'settle-img-'));
    spawnSync('pdfimages', ['-f', '1', '-l', '1', file, join(dir, 'img')]);
    const name = readdirSync(dir).find((f) => /^img-000\.p[gp]m$/.test(f));
    if (!name) return undefined;
    const data = readFileSync(join(dir, name));
    const header = /^P([56])\s+(\d+)\s+(\d+)\s+255\s/.exec(data.subarray(0, 40).toString('latin1'));
    if (!header) return undefined;
    const channels = header[1] === '6' ? 3 : 1;
    const width = Number(header[2]);
    const height = Number(header[3]);
    const offset = header[0].length;
    return { width, height, pixel: (x, y) => data[offset + (y * width + x) * channels]! };
  });
}

/** A ledger line for the patient's share. */
export const line = (lineKey: string, kind: LedgerLine['kind'], amount: string, serviceDate: string, extra: Partial<LedgerLine> = {}): LedgerLine => ({
  lineKey, kind, amount: parseMoney(amount, 'USD'), serviceDate, payer: 'patient', serviceCode: null, description: null, ...extra,
});

/** A self-guarantor patient with contact and one source record's lines. @returns the balance id. */
export async function seedBalance(db: Database, cipher: PhiCipher, clock: Clock, practiceId: string, mrn: string, contact: PersonContact, lines: LedgerLine[]): Promise<string> {
  const ledger = new LedgerRepository(db.pool, cipher, clock);
  const patientId = await ledger.upsertPatient(practiceId, { system: 'urn:mrn', value: mrn }, contact);
  const guarantorId = await ledger.ensureGuarantor(practiceId, { selfPatientId: patientId });
  const accountId = await ledger.ensureAccount(practiceId, { identifier: { system: 'urn:acct', value: `A-${mrn}` }, patientId });
  const posted = await withTransaction(db, (tx) =>
    ledger.on(tx).postSource(practiceId, { connector: 'ehr', resourceType: 'Invoice', sourceId: `inv-${mrn}`, versionId: '1', lastUpdated: null }, { accountId, guarantorId, patientId }, lines));
  return posted.balanceIds[0]!;
}
