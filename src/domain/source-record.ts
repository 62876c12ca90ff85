/**
 * A source record: one thing an EHR sent, stored as received before anything is made of it.
 * Connectors produce them (FHIR resources, HL7v2 segments groups, CSV rows); ingest maps them.
 */

/** How a record reached Settle. */
export type SourceTransport = 'fhir-r4' | 'hl7v2-mllp' | 'csv';

/** One record as received. The identity (connector, resourceType, sourceId, versionId) keys idempotency. */
export interface SourceRecord {
  practiceId: string;
  /** Name of the connector file it came through. */
  connector: string;
  transport: SourceTransport;
  /** FHIR resource type (`Invoice`), HL7 record kind (`DFT^P03/FT1`), or `csv-row`. */
  resourceType: string;
  /** The id at the source: FHIR id, HL7 control id + segment index, file + line. */
  sourceId: string;
  /** FHIR meta.versionId (or a content hash when the source has no versions). */
  versionId: string;
  /** FHIR meta.lastUpdated, HL7 MSH-7, or when the file was read. */
  lastUpdated: Date | null;
  /** SHA-256 of the body as received. */
  contentHash: string;
  /** The record itself: parsed JSON for FHIR, an object for HL7 and CSV. */
  body: unknown;
}
