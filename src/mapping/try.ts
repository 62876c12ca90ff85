/**
 * Trying a mapping on a file without touching the database: `settle mappings test NAME FILE` and
 * `POST /mappings/{name}/test`. A FHIR resource or Bundle (JSON), an HL7 v2 message (text starting with MSH),
 * or a CSV file (one record per row); every record's mapped result, or every error.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { formatMoney } from '../domain/money.ts';
import type { SourceRecord } from '../domain/source-record.ts';
import type { CompiledMapping, MappedRecord, MappingIssue } from './compile.ts';
import { loadMappings } from './load.ts';

/** One record of the tried file and what the mapping made of it. */
export interface TriedRecord {
  /** `Invoice/example`, `MSH-10 MSG00042`, `line 3`. */
  label: string;
  ok: boolean;
  record?: MappedRecord;
  issues?: MappingIssue[];
}

/** The records of a file, as a connector would present them (no practice, no version). */
export function recordsOfFile(content: string): { label: string; record: Pick<SourceRecord, 'transport' | 'resourceType' | 'body' | 'connector'> }[] {
  const text = content.replace(/^\uFEFF/, '');
  const trimmed = text.trimStart();
  if (trimmed.startsWith('MSH')) {
    const controlId = /^MSH\|(?:[^|\r\n]*\|){8}([^|\r\n]*)/.exec(trimmed)?.[1] ?? '';
    const type = /^MSH\|(?:[^|\r\n]*\|){7}([^|^\r\n]*\^[^|^\r\n]*)/.exec(trimmed)?.[1] ?? 'HL7';
    return [{ label: `MSH-10 ${controlId}`, record: { connector: 'test', transport: 'hl7v2-mllp', resourceType: type, body: { message: text } } }];
  }
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    const json = JSON.parse(text) as { resourceType?: string; id?: string; entry?: { resource?: { resourceType?: string; id?: string } }[] };
    const resources = json.resourceType === 'Bundle' ? (json.entry ?? []).map((e) => e.resource).filter((r) => r !== undefined) : [json];
    return resources.map((resource) => ({
      label: `${resource.resourceType ?? '?'}/${resource.id ?? '?'}`,
      record: { connector: 'test', transport: 'fhir-r4', resourceType: String(resource.resourceType), body: resource },
    }));
  }
  const rows = parseCsv(text, { columns: true, bom: true, trim: true, skip_empty_lines: true, relax_column_count: true, info: true }) as {
    record: Record<string, string>;
    info: { lines: number };
  }[];
  return rows.map(({ record, info }) => ({ label: `line ${info.lines}`, record: { connector: 'test', transport: 'csv', resourceType: 'csv-row', body: { row: record, line: info.lines } } }));
}

/**
 * Maps every record of a file with one mapping. FHIR Bundle entries of another resource type are skipped.
 * @param timeZone - the practice time zone dates are read in.
 */
export function tryMapping(mapping: CompiledMapping, content: string, timeZone = 'UTC'): TriedRecord[] {
  let records = recordsOfFile(content);
  if (records.length > 1 && mapping.transport === 'fhir-r4' && mapping.acceptsAll.length > 0) {
    records = records.filter(({ record }) => mapping.acceptsAll.includes(record.resourceType));
  }
  return records.map(({ label, record }) => {
    const result = mapping.map(record, { timeZone });
    return result.ok ? { label, ok: true, record: result.record } : { label, ok: false, issues: result.issues };
  });
}

/**
 * `settle mappings test NAME FILE`: loads the configuration's mappings, maps the file, prints the result.
 * @returns the exit code: 0 when every record mapped, 1 otherwise (or when the mapping or file is missing).
 */
export function runMappingsTest(configDir: string, name: string, file: string, print: (line: string) => void, timeZone = 'UTC'): number {
  let mapping: CompiledMapping | undefined;
  try {
    mapping = loadMappings(configDir).get(name);
  } catch (error) {
    print((error as Error).message);
    return 1;
  }
  if (!mapping) {
    print(`no mapping "${name}" in ${join(configDir, 'mappings')}`);
    return 1;
  }
  let content: string;
  try {
    content = readFileSync(file, 'utf8');
  } catch (error) {
    print(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    return 1;
  }
  let tried: TriedRecord[];
  try {
    tried = tryMapping(mapping, content, timeZone);
  } catch (error) {
    print(`${file}: ${(error as Error).message}`);
    return 1;
  }
  const { lines, exitCode } = formatTried(mapping, tried);
  lines.forEach((line) => print(line));
  return exitCode;
}

/** Printable lines for `settle mappings test`: each record's people, account and lines, or its errors. */
export function formatTried(mapping: CompiledMapping, tried: readonly TriedRecord[]): { lines: string[]; exitCode: number } {
  const lines: string[] = [];
  for (const t of tried) {
    if (!t.ok) {
      lines.push(`${t.label}: ${t.issues!.length} error${t.issues!.length === 1 ? '' : 's'}`);
      for (const issue of t.issues!) {
        const source = mapping.sourceOf(issue.path);
        lines.push(`  ${mapping.file}: ${issue.path}${issue.item === undefined ? '' : ` (item ${issue.item})`}${source ? ` [${source}]` : ''}: ${issue.message}`);
      }
      continue;
    }
    const r = t.record!;
    lines.push(`${t.label}: OK${r.void ? ' (contributes nothing: recordStatus)' : ''}`);
    if (r.patient) lines.push(`  patient ${r.patient.identifier.system}|${r.patient.identifier.value} contact: ${Object.keys(r.patient.contact).join(', ') || 'none'}`);
    lines.push(r.guarantor ? `  guarantor ${r.guarantor.identifier.system}|${r.guarantor.identifier.value}` : '  guarantor: the patient (or the account\'s)');
    if (r.account) lines.push(`  account ${r.account.identifier.system}|${r.account.identifier.value}${r.account.name ? ` "${r.account.name}"` : ''}`);
    for (const l of r.lines) {
      lines.push(`  ${l.lineKey}: ${l.kind} ${formatMoney(l.amount)} ${l.amount.currency} on ${l.serviceDate} (${l.payer})${l.serviceCode ? ` code ${l.serviceCode}` : ''}`);
    }
  }
  const failed = tried.filter((t) => !t.ok).length;
  lines.push(`${tried.length} record${tried.length === 1 ? '' : 's'}: ${tried.length - failed} mapped, ${failed} with errors`);
  return { lines, exitCode: failed > 0 || tried.length === 0 ? 1 : 0 };
}
