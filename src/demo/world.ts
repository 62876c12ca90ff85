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
    const seeded = await seedPractice(sandbox.repo, { patients: options.patients, seed: options.seed, start: options.start });
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
    return { configDir, sandbox, seeded, mllp, close: () => sandbox.close() };
  } catch (error) {
    await sandbox.close();
    throw error;
  }
}
