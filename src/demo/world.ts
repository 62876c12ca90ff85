/**
 * The demo's world outside Settle: the sandbox EHR (a FHIR R4 server seeded with a fictitious practice) and the
 * practice-management system's HL7 feed, plus the configuration folder that connects Settle to them. Everything
 * runs on this machine, on loopback; nothing is sent anywhere.
 *
 * The configuration folder (`<dataDir>/demo/config`) is a normal Settle configuration: two connector files
 * written for this run (the sandbox's port changes) and the shipped mappings, policies and profiles copied from
 * the configuration folder, so the demo runs the product's own files.
 */
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import type { WithId } from '@medplum/core';
import type { Resource } from '@medplum/fhirtypes';
import { MemoryRepository } from '@medplum/fhir-router';
import type { Clock } from '../domain/clock.ts';
import { seedPractice, type SeedSummary } from '../sandbox-ehr/seed.ts';
import { startSandboxEhr, type SandboxEhr } from '../sandbox-ehr/server.ts';

/** The demo practice: every page, message and export says "demo". */
export const DEMO_PRACTICE = { slug: 'demo', name: 'Maple Street Family Practice (demo)', timeZone: 'America/New_York', phone: '(555) 010-0100' } as const;
/** The demo's connector names. */
export const DEMO_CONNECTORS = { ehr: 'demo-ehr', pms: 'demo-pms' } as const;

/** A running demo world. */
export interface DemoWorld {
  /** The configuration folder the engine runs on in the demo. */
  configDir: string;
  sandbox: SandboxEhr;
  seeded: SeedSummary;
  /** Where the practice-management system sends HL7 (Settle's demo MLLP listener). */
  mllp: { host: string; port: number };
  /**
   * Adds patients left out at the start ({@link DemoWorldOptions.include}), by index, with their coverage, account
   * and invoices, updated now (so the next incremental sync brings them). Returns how many resources were added.
   */
  addPatients(indexes: readonly number[]): Promise<number>;
  close(): Promise<void>;
}

/** Options of {@link startDemoWorld}. */
export interface DemoWorldOptions {
  dataDir: string;
  /** The configuration folder whose mappings, policies and profiles the demo uses. */
  configDir: string;
  patients: number;
  seed: number;
  /** When the seeded data was last updated (the start of the demo's time). */
  start: Date;
  clock?: Clock;
  /**
   * Which patients (by index in the seeded order) the sandbox EHR holds from the start, as seeded (default: all).
   * The practice is generated whole either way, so a patient's resources are the same whenever they are added.
   */
  include?: (index: number) => boolean;
}

/**
 * A repository that keeps what is seeded into it as it is, in order, without indexing it: the practice is generated
 * once, then copied into the sandbox EHR patient by patient.
 */
class CollectingRepository extends MemoryRepository {
  readonly collected: Resource[] = [];
  override async createResource<T extends Resource>(resource: T): Promise<WithId<T>> {
    const { id } = resource;
    if (!id) throw new Error(`demo seed: a ${resource.resourceType} without an id`);
    this.collected.push(resource);
    return { ...resource, id };
  }
}

/** The patient a seeded resource belongs to (`Patient/<id>`). */
function ownerOf(resource: Resource): string | undefined {
  switch (resource.resourceType) {
    case 'Patient': return `Patient/${resource.id}`;
    case 'Coverage': return resource.beneficiary.reference;
    case 'Account': return resource.subject?.[0]?.reference;
    case 'Invoice': return resource.subject?.reference;
    default: return undefined;
  }
}

/** The last practice generated: the live demo's first start runs two worlds of it (the backlog's, then the engine's). */
let generated: { key: string; practice: Promise<{ seeded: SeedSummary; byPatient: Resource[][] }> } | undefined;

/** The seeded practice's resources grouped by patient, in the seeded order (patient, coverage, account, invoices). */
function practiceByPatient(options: DemoWorldOptions): Promise<{ seeded: SeedSummary; byPatient: Resource[][] }> {
  const key = `${options.seed}:${options.patients}:${options.start.toISOString()}`;
  if (generated?.key !== key) generated = { key, practice: generatePractice(options) };
  return generated.practice;
}

async function generatePractice(options: DemoWorldOptions): Promise<{ seeded: SeedSummary; byPatient: Resource[][] }> {
  const collector = new CollectingRepository();
  const seeded = await seedPractice(collector, { patients: options.patients, seed: options.seed, start: options.start });
  const index = new Map(seeded.ids.Patient.map((id, i) => [`Patient/${id}`, i]));
  const byPatient: Resource[][] = seeded.ids.Patient.map(() => []);
  for (const resource of collector.collected) {
    const i = index.get(ownerOf(resource) ?? '');
    if (i === undefined) throw new Error(`demo seed: ${resource.resourceType}/${resource.id} belongs to no seeded patient`);
    byPatient[i]!.push(resource);
  }
  return { seeded, byPatient };
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolvePort(port));
    });
  });
}

/** Starts the sandbox EHR, seeds it, and writes the demo configuration folder. */
export async function startDemoWorld(options: DemoWorldOptions): Promise<DemoWorld> {
  const sandbox = await startSandboxEhr({ port: 0, ...(options.clock ? { clock: options.clock } : {}) });
  try {
    let seeded: SeedSummary;
    let byPatient: Resource[][] = [];
    const include = options.include;
    if (include) {
      ({ seeded, byPatient } = await practiceByPatient(options));
      await sandbox.repo.withSeeding(async () => {
        for (const [i, resources] of byPatient.entries()) if (include(i)) for (const r of resources) await sandbox.repo.createResource(r);
      });
    } else {
      seeded = await seedPractice(sandbox.repo, { patients: options.patients, seed: options.seed, start: options.start });
    }
    const addPatients = async (indexes: readonly number[]) => {
      let added = 0;
      for (const i of indexes) {
        for (const resource of byPatient[i] ?? []) {
          await sandbox.repo.createResource(resource);
          added++;
        }
      }
      return added;
    };
    const mllp = { host: '127.0.0.1', port: await freePort() };
    const configDir = resolve(options.dataDir, 'demo', 'config');
    rmSync(configDir, { recursive: true, force: true });
    for (const folder of ['mappings', 'policies', 'fhir-profiles']) {
      cpSync(join(options.configDir, folder), join(configDir, folder), { recursive: true });
    }
    mkdirSync(join(configDir, 'connectors'), { recursive: true });
    cpSync(join(options.configDir, 'connectors', 'connector.schema.json'), join(configDir, 'connectors', 'connector.schema.json'));
    const connectors = {
      [DEMO_CONNECTORS.ehr]: {
        $schema: './connector.schema.json',
        name: DEMO_CONNECTORS.ehr,
        description: 'DEMO: the sandbox EHR started by the demo, holding a fictitious practice. Payments are written back to it as PaymentReconciliation.',
        practice: DEMO_PRACTICE.slug,
        transport: 'fhir-r4',
        baseUrl: sandbox.baseUrl,
        auth: { method: 'none' },
        resources: [{ type: 'Patient' }, { type: 'Account', search: { status: 'active' } }, { type: 'Invoice', search: { status: 'issued' } }],
        schedule: { every: '15 minutes' },
        pageSize: 500,
        rateLimitPerSecond: 1000,
        writeBack: { enabled: true, renderer: 'payment-reconciliation', maxAttempts: 10, retry: { initialSeconds: 30, maxSeconds: 3600 } },
      },
      [DEMO_CONNECTORS.pms]: {
        $schema: './connector.schema.json',
        name: DEMO_CONNECTORS.pms,
        description: 'DEMO: the simulated practice-management system sends its visits (DFT^P03) to this listener on loopback.',
        practice: DEMO_PRACTICE.slug,
        transport: 'hl7v2-mllp',
        listen: mllp,
        acceptedMessageTypes: ['DFT^P03', 'ADT^A04', 'ADT^A08', 'BAR^P01'],
        charset: 'UTF-8',
        retentionDays: 90,
      },
    };
    for (const [name, data] of Object.entries(connectors)) writeFileSync(join(configDir, 'connectors', `${name}.json`), `${JSON.stringify(data, null, 2)}\n`);
    return { configDir, sandbox, seeded, mllp, addPatients, close: () => sandbox.close() };
  } catch (error) {
    await sandbox.close();
    throw error;
  }
}
