/**
 * Seeds the sandbox EHR with HL7's official FHIR R4 example resources (the npm package `hl7.fhir.r4.examples`,
 * one `Type-id.json` file per resource) of the financial types Settle pulls.
 *
 * The package is a development dependency (about 5,000 files): it is present in a checkout after `npm install`,
 * absent from the production image (`npm ci --omit=dev`). Loading without it fails with
 * {@link Hl7ExamplesMissingError}, which says so.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Resource } from '@medplum/fhirtypes';
import type { MemoryRepository } from '@medplum/fhir-router';
import { SANDBOX_RESOURCE_TYPES } from './server.ts';

/** The npm package holding HL7's R4 examples. */
export const HL7_EXAMPLES_PACKAGE = 'hl7.fhir.r4.examples';

/** The example types loaded by default: what Settle's FHIR connectors pull. */
export const EXAMPLE_RESOURCE_TYPES = ['Patient', 'Account', 'Invoice', 'ChargeItem', 'Coverage'] as const;

/** Thrown when `hl7.fhir.r4.examples` cannot be resolved. */
export class Hl7ExamplesMissingError extends Error {
  constructor() {
    super(
      `HL7's FHIR R4 examples are not installed: the npm package ${HL7_EXAMPLES_PACKAGE} is a development dependency of Settle. ` +
        'Run `npm install` in a Settle checkout (the production image, built with --omit=dev, does not have it), or leave out --examples.',
    );
    this.name = 'Hl7ExamplesMissingError';
  }
}

/** Options of {@link loadHl7Examples}. */
export interface Hl7ExamplesOptions {
  /** Resource types to load; each must be one the sandbox serves. Default {@link EXAMPLE_RESOURCE_TYPES}. */
  types?: readonly string[];
  /** Where the package is resolved from (a file path or URL, as for `createRequire`); default this module. */
  resolveFrom?: string | URL;
}

/** What {@link loadHl7Examples} loaded. */
export interface Hl7ExamplesSummary {
  /** Version of the examples package. */
  version: string;
  /** Resources stored, by type (every requested type is a key, 0 when none was stored). */
  loaded: Record<string, number>;
  /** Example files not stored: unreadable, not the resource type their name says, or refused by the repository. */
  skipped: { file: string; reason: string }[];
}

/** The directory of the installed `hl7.fhir.r4.examples`, or {@link Hl7ExamplesMissingError}. */
export function hl7ExamplesDirectory(resolveFrom: string | URL = import.meta.url): string {
  try {
    return dirname(createRequire(resolveFrom).resolve(`${HL7_EXAMPLES_PACKAGE}/package.json`));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') throw new Hl7ExamplesMissingError();
    throw error;
  }
}

/**
 * Stores HL7's examples of `types` in `repo` under their example ids (`Invoice/example`, `Patient/f001`, …), with a
 * fresh versionId and lastUpdated so an incremental sync picks them up. A file the repository refuses (an id already
 * in use, for instance) is counted in `skipped` and the load goes on.
 */
export async function loadHl7Examples(repo: MemoryRepository, options: Hl7ExamplesOptions = {}): Promise<Hl7ExamplesSummary> {
  const types = options.types ?? EXAMPLE_RESOURCE_TYPES;
  const served: readonly string[] = SANDBOX_RESOURCE_TYPES;
  const unserved = types.filter((t) => !served.includes(t));
  if (unserved.length > 0) throw new Error(`the sandbox EHR does not serve ${unserved.join(', ')} (it serves ${served.join(', ')})`);
  const dir = hl7ExamplesDirectory(options.resolveFrom);
  const version = String((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: unknown }).version ?? 'unknown');
  const summary: Hl7ExamplesSummary = { version, loaded: Object.fromEntries(types.map((t) => [t, 0])), skipped: [] };
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.json') && types.includes(f.slice(0, f.indexOf('-'))))
    .sort();
  for (const file of files) {
    const type = file.slice(0, file.indexOf('-'));
    let resource: Resource;
    try {
      resource = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Resource;
    } catch (error) {
      summary.skipped.push({ file, reason: `not readable JSON: ${(error as Error).message}` });
      continue;
    }
    if (resource?.resourceType !== type) {
      summary.skipped.push({ file, reason: `resourceType is ${String(resource?.resourceType)}, not ${type}` });
      continue;
    }
    try {
      await repo.createResource(resource);
      summary.loaded[type] = (summary.loaded[type] ?? 0) + 1;
    } catch (error) {
      summary.skipped.push({ file, reason: errorText(error) });
    }
  }
  return summary;
}

function errorText(error: unknown): string {
  const issue = (error as { outcome?: { issue?: { details?: { text?: string }; diagnostics?: string }[] } }).outcome?.issue?.[0];
  return issue?.details?.text ?? issue?.diagnostics ?? (error as Error).message ?? String(error);
}
