/**
 * `settle connectors check NAME`: what a FHIR server says it can do (its CapabilityStatement) against what a
 * connector asks of it — per resource type: offered or not, the interactions the sync needs, each configured search
 * parameter and the ones incremental sync relies on (`_lastUpdated`, `_sort`, `_count`) — each gap with its fix.
 */
import type { CapabilityStatement, CapabilityStatementRestResource, CapabilityStatementRestResourceSearchParam } from '@medplum/fhirtypes';
import { systemClock, type Clock } from '../../domain/clock.ts';
import { ConnectorConfigError, rateLimited, resolveAuth, type ConnectorResource, type Env, type FhirConnectorConfig } from './connector.ts';
import { FhirError } from './errors.ts';
import { FhirClient } from './fhir-client.ts';
import { createTokenProvider } from './smart-auth.ts';

/** `ok`: works as configured; `warning`: works, with a caveat; `error`: will not work as configured. */
export type CheckLevel = 'ok' | 'warning' | 'error';

/** One finding, with what to do about it. */
export interface Finding {
  level: Exclude<CheckLevel, 'ok'>;
  message: string;
  fix?: string;
}

/** A search parameter the connector sends. */
export interface SearchParamCheck {
  name: string;
  /** Why it is sent: the connector's `search`, or the sync's own `_lastUpdated` / `_sort` / `_count`. */
  purpose: 'configured' | 'incremental' | 'sort' | 'paging';
  supported: boolean;
}

/** The verdict for one configured resource type. */
export interface ResourceCheck {
  type: string;
  level: CheckLevel;
  offered: boolean;
  /** Interactions the server declares for the type. */
  interactions: string[];
  searchParams: SearchParamCheck[];
  findings: Finding[];
}

/** A write the connector will need (write-back), checked the same way. */
export interface WriteNeed {
  type: string;
  interaction: 'create' | 'update';
  /** Needs conditional create (`If-None-Exist`) or conditional update. */
  conditional?: boolean;
}

export interface WriteCheck extends WriteNeed {
  level: CheckLevel;
  findings: Finding[];
}

/** The whole report. */
export interface CapabilityReport {
  level: CheckLevel;
  server: { name?: string; fhirVersion?: string; tokenUrl?: string };
  /** Findings about the server as a whole (FHIR version, token URL). */
  findings: Finding[];
  resources: ResourceCheck[];
  writes: WriteCheck[];
}

const FINANCIAL = ['Invoice', 'Account', 'ChargeItem'] as const;
/** A sentence of a vendor's search parameter documentation that makes a parameter mandatory. */
const REQUIRED_HINT = /\b(required|must be provided)\b/i;
const OAUTH_URIS = 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris';

function worst(levels: CheckLevel[]): CheckLevel {
  return levels.includes('error') ? 'error' : levels.includes('warning') ? 'warning' : 'ok';
}

/** The token URL a CapabilityStatement advertises (SMART oauth-uris extension), if any. */
export function advertisedTokenUrl(statement: CapabilityStatement): string | undefined {
  for (const rest of statement.rest ?? []) {
    for (const ext of rest.security?.extension ?? []) {
      // Some servers (athenahealth) prefix the registry URL oddly; match on its tail.
      if (ext.url === OAUTH_URIS || ext.url?.endsWith('fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris')) {
        const token = ext.extension?.find((e) => e.url === 'token')?.valueUri;
        if (token) return token;
      }
    }
  }
  return undefined;
}

function quote(text: string): string {
  const trimmed = text.trim().replace(/\s+/g, ' ');
  return `"${trimmed.length > 300 ? `${trimmed.slice(0, 297)}...` : trimmed}"`;
}

/**
 * Compares a CapabilityStatement with what a connector asks.
 * @param connector - its resources (and auth, to compare the token URL).
 * @param writes - writes write-back will need, if any.
 */
export function checkCapabilities(
  statement: CapabilityStatement,
  connector: Pick<FhirConnectorConfig, 'resources'> & Partial<Pick<FhirConnectorConfig, 'auth'>>,
  writes: readonly WriteNeed[] = [],
): CapabilityReport {
  const server = statement.rest?.find((r) => r.mode === 'server');
  const findings: Finding[] = [];
  const tokenUrl = advertisedTokenUrl(statement);
  const report: CapabilityReport = {
    level: 'ok',
    server: { name: statement.software?.name ?? statement.title ?? statement.name, fhirVersion: statement.fhirVersion, tokenUrl },
    findings,
    resources: [],
    writes: [],
  };
  if (statement.resourceType !== 'CapabilityStatement') {
    findings.push({ level: 'error', message: `the server's /metadata is a ${String(statement.resourceType)}, not a CapabilityStatement`, fix: 'check baseUrl: it must be the FHIR R4 base (the URL before /Patient)' });
  } else if (statement.fhirVersion && !statement.fhirVersion.startsWith('4.0')) {
    findings.push({ level: 'error', message: `the server speaks FHIR ${statement.fhirVersion}, not R4 (4.0.x)`, fix: "point baseUrl at the server's R4 endpoint" });
  }
  if (!server) findings.push({ level: 'error', message: 'the CapabilityStatement declares no REST server mode' });
  const auth = connector.auth;
  if (tokenUrl && auth && (auth.method === 'smart-backend' || auth.method === 'client-secret') && auth.tokenUrl !== tokenUrl) {
    findings.push({ level: 'warning', message: `the server advertises the token URL ${tokenUrl}, the connector uses ${auth.tokenUrl}`, fix: 'set auth.tokenUrl to the advertised one unless your EHR told you otherwise' });
  }

  const byType = new Map<string, CapabilityStatementRestResource>((server?.resource ?? []).map((r) => [r.type, r]));
  const searchable = (type: string) => byType.get(type)?.interaction?.some((i) => i.code === 'search-type') === true;
  const commonParams = server?.searchParam ?? [];

  connector.resources.forEach((resource: ConnectorResource, index: number) => {
    const declared = byType.get(resource.type);
    const check: ResourceCheck = { type: resource.type, level: 'ok', offered: declared !== undefined, interactions: (declared?.interaction ?? []).map((i) => i.code), searchParams: [], findings: [] };
    report.resources.push(check);
    if (!declared) {
      check.findings.push({ level: 'error', message: `${resource.type} is not offered`, fix: notOfferedFix(resource.type, searchable) });
      check.level = 'error';
      return;
    }
    if (!check.interactions.includes('search-type')) {
      const readable = check.interactions.includes('read');
      check.findings.push({
        level: 'error',
        message: `${resource.type} ${readable ? 'can be read by id but not searched' : 'is listed with no search interaction'}`,
        fix: `remove ${resource.type} from resources, or pull it with Bulk $export if the server offers it`,
      });
    }
    const params = new Map<string, CapabilityStatementRestResourceSearchParam>([...commonParams, ...(declared.searchParam ?? [])].map((p) => [p.name, p]));
    const has = (name: string) => params.has(name);
    const incremental = resource.incremental !== false;
    const sorted = incremental && resource.sort !== false;
    const configured = Object.keys(resource.search ?? {});
    for (const name of configured) {
      const supported = has(name);
      check.searchParams.push({ name, purpose: 'configured', supported });
      if (!supported) {
        const alternative = name.startsWith('-') ? (has(name.slice(1)) ? name.slice(1) : undefined) : has(`-${name}`) ? `-${name}` : undefined;
        check.findings.push({
          level: 'error',
          message: `search parameter "${name}" is not supported for ${resource.type}`,
          fix: alternative
            ? `this server offers "${alternative}" instead: rename it in resources[${index}].search`
            : `remove "${name}" from resources[${index}].search`,
        });
      }
    }
    if (incremental) {
      const supported = has('_lastUpdated');
      check.searchParams.push({ name: '_lastUpdated', purpose: 'incremental', supported });
      if (!supported) {
        check.findings.push({
          level: 'error',
          message: `${resource.type} cannot be searched by _lastUpdated, so it cannot be synced incrementally`,
          fix: `set "incremental": false in resources[${index}] (each sync then reads every ${resource.type} and stores only new versions), or pull it with Bulk $export`,
        });
      }
    }
    if (sorted) {
      const supported = has('_sort');
      check.searchParams.push({ name: '_sort', purpose: 'sort', supported });
      if (!supported) {
        check.findings.push({
          level: 'warning',
          message: `the server does not declare _sort for ${resource.type}`,
          fix: `if it ignores _sort=_lastUpdated the sync notices and moves the checkpoint only at the end of each search; if it refuses it, set "sort": false in resources[${index}]`,
        });
      }
    }
    const countSupported = has('_count');
    check.searchParams.push({ name: '_count', purpose: 'paging', supported: countSupported });
    if (!countSupported) check.findings.push({ level: 'warning', message: `the server does not declare _count for ${resource.type}: pages may come in its own size` });
    // Vendors document search parameters a type-wide search cannot do without (Oracle: "Required in every search").
    const rules = new Map<string, string[]>();
    for (const p of params.values()) {
      if (configured.includes(p.name) || !p.documentation) continue;
      const sentences = p.documentation.split(/(?<=\.)\s+/).filter((sentence) => REQUIRED_HINT.test(sentence));
      if (sentences.length === 0) continue;
      const rule = sentences.join(' ');
      rules.set(rule, [...(rules.get(rule) ?? []), p.name]);
    }
    if (rules.size > 0) {
      check.findings.push({
        level: 'warning',
        message: `the server documents search parameters this connector does not send: ${[...rules].map(([rule, names]) => `${names.join(', ')}: ${quote(rule)}`).join('; ')}`,
        fix: `a search of all ${resource.type} may be refused: add what your tenant needs to resources[${index}].search, or pull ${resource.type} with Bulk $export`,
      });
    }
    check.level = worst(check.findings.map((f) => f.level));
  });

  for (const need of writes) {
    const declared = byType.get(need.type);
    const write: WriteCheck = { ...need, level: 'ok', findings: [] };
    if (!declared || !declared.interaction?.some((i) => i.code === need.interaction)) {
      write.findings.push({ level: 'error', message: `${need.type} ${need.interaction} is not offered`, fix: writeFix(need, byType) });
    } else if (need.conditional) {
      const flag = need.interaction === 'create' ? declared.conditionalCreate : declared.conditionalUpdate;
      if (flag !== true) {
        write.findings.push({
          level: 'warning',
          message: `the server does not declare conditional ${need.interaction} for ${need.type}`,
          fix: 'write-back will not retry a write whose outcome is unknown; check the outbox for writes left undecided',
        });
      }
    }
    write.level = worst(write.findings.map((f) => f.level));
    report.writes.push(write);
  }
  report.level = worst([...findings.map((f) => f.level), ...report.resources.map((r) => r.level), ...report.writes.map((w) => w.level)]);
  return report;
}

function notOfferedFix(type: string, searchable: (type: string) => boolean): string {
  const offered = FINANCIAL.filter((t) => searchable(t));
  if ((FINANCIAL as readonly string[]).includes(type)) {
    if (type === 'Invoice' && offered.includes('Account') && offered.includes('ChargeItem')) return 'use the Oracle Health preset (Account + ChargeItem): connectors/oracle-health-fhir-r4.json';
    if (offered.length === 0) {
      return 'this server offers no financial resource (Invoice, Account or ChargeItem): balances cannot come over its FHIR API; bring them in with an hl7v2-mllp connector (DFT^P03) or a csv statement export, and keep this connector for Patient and Coverage only';
    }
    return `pull ${offered.join(' and ')} instead, and remove ${type} from resources`;
  }
  return `remove ${type} from resources`;
}

function writeFix(need: WriteNeed, byType: Map<string, CapabilityStatementRestResource>): string {
  if (need.type === 'PaymentReconciliation' && byType.get('Basic')?.interaction?.some((i) => i.code === 'create')) {
    return "write payments back as the vendor's Basic resource (Oracle Health's payment write-back), or as HL7v2 DFT^P03";
  }
  return 'write payments back over HL7v2 (DFT^P03) instead';
}

const MARK: Record<CheckLevel, string> = { ok: 'ok  ', warning: 'warn', error: 'FAIL' };

/** The report as lines for a terminal. */
export function formatCapabilityReport(report: CapabilityReport, connectorName: string): string[] {
  const lines: string[] = [];
  const server = [report.server.name, report.server.fhirVersion && `FHIR ${report.server.fhirVersion}`].filter(Boolean).join(', ');
  lines.push(`${connectorName}: ${server || 'unnamed server'}`);
  const findingLines = (f: Finding, indent: string) => [`${indent}${f.level === 'error' ? 'problem' : 'note'}: ${f.message}`, ...(f.fix ? [`${indent}  fix: ${f.fix}`] : [])];
  for (const f of report.findings) lines.push(...findingLines(f, '  '));
  for (const r of report.resources) {
    const params = r.searchParams.map((p) => `${p.name}${p.supported ? '' : ' (not supported)'}`).join(', ');
    const detail = r.offered ? `interactions ${r.interactions.join(', ') || 'none'}; search ${params || 'none'}` : 'not offered';
    lines.push(`  [${MARK[r.level]}] ${r.type}: ${detail}`);
    for (const f of r.findings) lines.push(...findingLines(f, '         '));
  }
  for (const w of report.writes) {
    lines.push(`  [${MARK[w.level]}] ${w.conditional ? 'conditional ' : ''}${w.interaction} ${w.type}`);
    for (const f of w.findings) lines.push(...findingLines(f, '         '));
  }
  const usable = report.resources.filter((r) => r.level !== 'error').length;
  const problems = [...report.findings, ...report.resources.flatMap((r) => r.findings), ...report.writes.flatMap((w) => w.findings)];
  const errors = problems.filter((f) => f.level === 'error').length;
  const warnings = problems.length - errors;
  lines.push(`${usable} of ${report.resources.length} resource types usable as configured; ${errors} problem${errors === 1 ? '' : 's'}, ${warnings} note${warnings === 1 ? '' : 's'}`);
  return lines;
}

/** What {@link runConnectorCheck} needs. */
export interface ConnectorCheckOptions {
  connector: FhirConnectorConfig;
  /** Receives each output line (no newline). */
  out: (line: string) => void;
  env?: Env;
  fetch?: typeof fetch;
  clock?: Clock;
  writes?: readonly WriteNeed[];
}

/**
 * Authenticates with the connector's credentials, reads the CapabilityStatement and prints the report.
 * @returns 0 when every configured resource type is usable as configured, 1 otherwise (or when authentication or
 *   the metadata read failed).
 */
export async function runConnectorCheck(options: ConnectorCheckOptions): Promise<{ code: number; report?: CapabilityReport }> {
  const { connector, out } = options;
  let provider;
  try {
    provider = createTokenProvider(resolveAuth(connector, options.env), { clock: options.clock ?? systemClock, fetch: options.fetch });
  } catch (error) {
    out(error instanceof ConnectorConfigError ? error.message : `connector ${connector.name}: unusable credentials: ${(error as Error).message}`);
    return { code: 1 };
  }
  if (connector.auth.method !== 'none') {
    try {
      await provider.authorization();
      out(`${connector.name}: authenticated (${connector.auth.method})`);
    } catch (error) {
      out(`${connector.name}: authentication failed: ${error instanceof FhirError ? error.message : (error as Error).message}`);
      return { code: 1 };
    }
  }
  const client = new FhirClient({
    baseUrl: connector.baseUrl,
    auth: provider,
    clock: options.clock,
    fetch: rateLimited(options.fetch ?? fetch, connector.rateLimitPerSecond),
    maxAttempts: 3,
  });
  let statement: CapabilityStatement;
  try {
    statement = (await client.capabilities()) as CapabilityStatement;
  } catch (error) {
    out(`${connector.name}: could not read ${connector.baseUrl}/metadata: ${(error as Error).message}`);
    return { code: 1 };
  }
  const report = checkCapabilities(statement, connector, options.writes);
  for (const line of formatCapabilityReport(report, connector.name)) out(line);
  return { code: report.resources.some((r) => r.level === 'error') || report.findings.some((f) => f.level === 'error') ? 1 : 0, report };
}
