/**
 * Where a practice's write-backs go, read from the `writeBack` section of its connector files: the one connector
 * of the practice with `writeBack.enabled` is its target, with the renderer that connector's EHR accepts and the
 * retry policy. A practice with no enabled connector keeps its write-backs in the outbox until one is configured.
 */
import type { DataFile } from '../config/data-files.ts';
import { backoffDelay } from '../connectors/hl7v2/mllp-sender.ts';
import { fhirConnectorConfig, type FhirConnectorConfig } from '../connectors/fhir/connector.ts';
import { DEFAULT_WRITEBACK_SYSTEM } from './render-fhir.ts';
import type { DftOptions } from './render-hl7.ts';

/** Attempts and backoff between them. */
export interface WritebackRetryPolicy {
  /** Attempts before dead-lettering. */
  maxAttempts: number;
  initialMs: number;
  maxMs: number;
}

/** A FHIR write-back target. */
export interface FhirWritebackTarget {
  transport: 'fhir-r4';
  connector: FhirConnectorConfig;
  renderer: 'payment-reconciliation' | 'vendor-mapping';
  /** With vendor-mapping: the mapping's name. */
  mapping?: string;
  identifierSystem: string;
  retry: WritebackRetryPolicy;
}

/** An HL7 v2 write-back target (DFT^P03 to the connector's outbound peer). */
export interface Hl7WritebackTarget {
  transport: 'hl7v2-mllp';
  connector: { name: string; practice: string; outbound: { host: string; port: number } };
  renderer: 'hl7-dft-p03';
  dft: DftOptions;
  ackTimeoutMs: number;
  retry: WritebackRetryPolicy;
}

export type WritebackTarget = FhirWritebackTarget | Hl7WritebackTarget;

/** The write-back section of a connector file, as the schema allows it. */
interface WriteBackSection {
  enabled: boolean;
  renderer: 'payment-reconciliation' | 'vendor-mapping' | 'hl7-dft-p03';
  mapping?: string;
  identifierSystem?: string;
  maxAttempts?: number;
  retry?: { initialSeconds?: number; maxSeconds?: number };
  sendingApplication?: string;
  sendingFacility?: string;
  receivingApplication?: string;
  receivingFacility?: string;
  transactionCode?: string;
  ackTimeoutSeconds?: number;
}

/** A write-back configuration that cannot be used; names the files. */
export class WritebackConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WritebackConfigError';
  }
}

/**
 * The write-back target of each practice (by practice slug), from the connector files.
 * @param mappingExists - whether a mapping name exists (to check vendor-mapping references).
 * @throws WritebackConfigError when a practice has two enabled targets or a vendor mapping does not exist.
 */
export function writebackTargets(connectors: readonly DataFile[], mappingExists: (name: string) => boolean = () => true): Map<string, WritebackTarget> {
  const targets = new Map<string, { target: WritebackTarget; file: string }>();
  for (const file of connectors) {
    const section = file.data.writeBack as WriteBackSection | undefined;
    if (!section?.enabled) continue;
    const practice = String(file.data.practice);
    const retry: WritebackRetryPolicy = {
      maxAttempts: section.maxAttempts ?? 10,
      initialMs: (section.retry?.initialSeconds ?? 30) * 1000,
      maxMs: (section.retry?.maxSeconds ?? 3600) * 1000,
    };
    let target: WritebackTarget;
    if (file.data.transport === 'fhir-r4') {
      const renderer = section.renderer === 'vendor-mapping' ? 'vendor-mapping' : 'payment-reconciliation';
      if (renderer === 'vendor-mapping' && (!section.mapping || !mappingExists(section.mapping))) {
        throw new WritebackConfigError(`${file.file}: /writeBack/mapping names no mapping: there is no mappings/${section.mapping ?? '(none)'}.json`);
      }
      target = {
        transport: 'fhir-r4', connector: fhirConnectorConfig(file.data), renderer, ...(section.mapping ? { mapping: section.mapping } : {}),
        identifierSystem: section.identifierSystem ?? DEFAULT_WRITEBACK_SYSTEM, retry,
      };
    } else if (file.data.transport === 'hl7v2-mllp') {
      const outbound = file.data.outbound as { host: string; port: number } | undefined;
      if (!outbound) throw new WritebackConfigError(`${file.file}: /outbound is required: the peer DFT^P03 write-backs are sent to`);
      target = {
        transport: 'hl7v2-mllp', connector: { name: file.name, practice, outbound }, renderer: 'hl7-dft-p03',
        dft: {
          sendingApplication: section.sendingApplication ?? 'SETTLE', sendingFacility: section.sendingFacility ?? '',
          receivingApplication: section.receivingApplication ?? '', receivingFacility: section.receivingFacility ?? '',
          transactionCode: section.transactionCode ?? 'PATPAY',
        },
        ackTimeoutMs: (section.ackTimeoutSeconds ?? 30) * 1000,
        retry,
      };
    } else {
      throw new WritebackConfigError(`${file.file}: /writeBack: a ${String(file.data.transport)} connector cannot take write-backs`);
    }
    const other = targets.get(practice);
    if (other) {
      throw new WritebackConfigError(`practice "${practice}" has write-back enabled in two connectors (${other.file} and ${file.file}): enable it in one`);
    }
    targets.set(practice, { target, file: file.file });
  }
  return new Map([...targets].map(([practice, { target }]) => [practice, target]));
}

/**
 * When to try again after failed attempt number `attempts` (1-based): `initial × 2^(attempts−1)`, capped, then
 * jittered to between half and all of it, so many write-backs failing together do not come back together.
 */
export function nextAttemptDelayMs(attempts: number, retry: WritebackRetryPolicy, random: () => number = Math.random): number {
  return backoffDelay(Math.max(0, attempts - 1), { initialMs: retry.initialMs, maxMs: retry.maxMs, factor: 2 }, random);
}
