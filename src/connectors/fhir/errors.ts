/**
 * Errors at the FHIR edge are OperationOutcome-shaped and name the URL without query values (which may carry PHI:
 * `Patient?family=…&birthdate=…`).
 */
import type { OperationOutcome, OperationOutcomeIssue } from '@medplum/fhirtypes';

/** Query parameters whose values never identify a patient and help diagnose a failing request. */
const SAFE_PARAMS = new Set(['_count', '_getpagesoffset', '_sort', '_lastUpdated', '_since', '_type', '_summary', '_total', '_format', '_pretty', '_bundletype']);

/** `url` with every query value except a few harmless paging/sync parameters replaced by `*`. */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url.split('?')[0] ?? '';
  }
  const base = `${parsed.origin}${parsed.pathname}`;
  if (!parsed.search) return base;
  const parts = [...parsed.searchParams].map(([k, v]) => `${encodeURIComponent(k)}=${SAFE_PARAMS.has(k) ? encodeURIComponent(v) : '*'}`);
  return `${base}?${parts.join('&')}`;
}

export type IssueCode = OperationOutcomeIssue['code'];

/** Builds a one-issue OperationOutcome. */
export function outcomeOf(code: IssueCode, text: string, diagnostics?: string): OperationOutcome {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text }, ...(diagnostics ? { diagnostics } : {}) }] };
}

/** A failed exchange with a FHIR server or its authorization server. */
export class FhirError extends Error {
  /** HTTP status, or 0 when no response arrived (network error, timeout). */
  readonly status: number;
  readonly outcome: OperationOutcome;
  /** The request URL with query values redacted. */
  readonly url: string;
  constructor(status: number, outcome: OperationOutcome, url: string) {
    const text = outcome.issue?.map((i) => i.details?.text ?? i.diagnostics ?? i.code).join('; ') || 'request failed';
    const redacted = redactUrl(url);
    super(`${status || 'no response'} from ${redacted}: ${text}`);
    this.name = 'FhirError';
    this.status = status;
    this.outcome = outcome;
    this.url = redacted;
  }
}

/**
 * An unconditional write whose outcome is unknown (no response, a timeout, a 5xx): the server may or may not have
 * done it, so it was not retried. Check the server before writing again.
 */
export class FhirWriteUnknownError extends FhirError {
  constructor(status: number, outcome: OperationOutcome, url: string) {
    super(status, outcome, url);
    this.name = 'FhirWriteUnknownError';
  }
}

/** Codes for HTTP statuses without an OperationOutcome body. */
export function issueCodeForStatus(status: number): IssueCode {
  if (status === 0) return 'transient';
  if (status === 401) return 'login';
  if (status === 403) return 'forbidden';
  if (status === 404 || status === 410) return 'not-found';
  if (status === 429) return 'throttled';
  if (status === 409 || status === 412) return 'conflict';
  if (status >= 500) return 'transient';
  return 'invalid';
}
