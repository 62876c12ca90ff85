/**
 * The import rules of `src/` (ARCHITECTURE.md "one folder per stage; data flows left to right", with the
 * amendments the README's "Layout" section states): every relative import of every file under `src/` is
 * checked, so a stage that starts reaching into another one fails here with the file and the import.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/** What each folder of `src/` may import besides itself; `*`: every folder (the wiring). */
const MAY_IMPORT: Readonly<Record<string, readonly string[] | '*'>> = {
  domain: [],
  config: ['domain'],
  store: ['domain'],
  // Amended: a connector commits what it receives before acknowledging it (an HL7 message before its AA, a page of
  // FHIR resources before its checkpoint), so it writes through its store repositories.
  connectors: ['domain', 'store'],
  mapping: ['domain', 'config'],
  ingest: ['domain', 'store', 'mapping'],
  outreach: ['domain', 'store'],
  payments: ['domain', 'store'],
  writeback: ['domain', 'store', 'mapping', 'connectors'],
  analytics: ['domain', 'store'],
  'sandbox-ehr': ['domain'],
  types: [],
  scheduler: '*',
  api: '*',
  dashboard: '*',
  cli: '*',
  demo: '*',
};

/**
 * A stage's HTTP routes, CLI commands and job registrations live beside the stage they serve: they are API, CLI
 * and scheduler code, and may import what those may.
 */
const WIRING_FILE = /(routes?|webhooks|-cli|commands?|jobs?|wiring)\.ts$/;

/** Imports every stage may make: the typed data files and the logger, the ambient types, and the job type. */
function alwaysAllowed(target: string, typeOnly: boolean): boolean {
  return target.startsWith('config/') || target.startsWith('types/') || (typeOnly && target === 'scheduler/scheduler.ts');
}

/** Imports the rules above do not allow, each with its reason. */
const EXCEPTIONS: Readonly<Record<string, string>> = {
  // The hl7.process job turns stored HL7 messages into source records with the connector's own conversion.
  'ingest/hl7-process.ts -> connectors/hl7v2/to-source-records.ts': 'HL7 conversion belongs to the connector',
};

interface Import {
  from: string;
  target: string;
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

/** Every relative import of a file (static, `import type`, re-exports and dynamic `import()`), as paths under src/. */
function importsOf(file: string): Import[] {
  const text = readFileSync(file, 'utf8');
  const found: Import[] = [];
  const pattern = /\b(import|export)(\s+type)?\s[^'";]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;
  for (const match of text.matchAll(pattern)) {
    const specifier = match[3] ?? match[4]!;
    found.push({
      from: relative(SRC, file),
      target: relative(SRC, normalize(join(dirname(file), specifier))),
      typeOnly: match[2] !== undefined,
    });
  }
  return found;
}

function violations(): string[] {
  const problems: string[] = [];
  for (const file of sourceFiles(SRC)) {
    for (const { from, target, typeOnly } of importsOf(file)) {
      const stage = from.split('/')[0]!;
      const targetStage = target.split('/')[0]!;
      if (target.startsWith('..')) {
        problems.push(`${from} imports ${target}, outside src/`);
        continue;
      }
      const rule = MAY_IMPORT[stage];
      if (rule === undefined) {
        problems.push(`${from}: the folder src/${stage}/ has no rule (add it to MAY_IMPORT and the README's Layout)`);
        continue;
      }
      if (targetStage === stage || rule === '*' || rule.includes(targetStage) || alwaysAllowed(target, typeOnly)) continue;
      if (WIRING_FILE.test(from)) continue;
      if (EXCEPTIONS[`${from} -> ${target}`]) continue;
      problems.push(`${from} imports ${target}: src/${stage}/ may import ${rule.length ? rule.join(', ') : 'nothing of ours'}`);
    }
  }
  return problems;
}

describe('the layout of src/', () => {
  it('keeps every stage to the imports ARCHITECTURE.md allows it', () => {
    assert.deepEqual(violations(), []);
  });

  it('reads every import form, so the check above can fail', () => {
    const store = importsOf(join(SRC, 'store/plans.ts'));
    assert.ok(store.some((i) => i.target === 'domain/payment-plan.ts'), 'store/plans.ts reads the plan rules from domain/');
    const typeOnly = importsOf(join(SRC, 'outreach/run.ts')).find((i) => i.target === 'scheduler/scheduler.ts');
    assert.equal(typeOnly?.typeOnly, true, 'an `import type` is recognised');
  });

  it('names only exceptions that still exist', () => {
    const all = new Set(sourceFiles(SRC).flatMap((file) => importsOf(file).map((i) => `${i.from} -> ${i.target}`)));
    for (const exception of Object.keys(EXCEPTIONS)) assert.ok(all.has(exception), `stale exception: ${exception}`);
  });
});
