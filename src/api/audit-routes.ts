/**
 * The audit trail over the API: `GET /audit?from=&to=` exports a period's events as a FHIR R4 Bundle of
 * `AuditEvent` resources (admin keys; the export is itself an audit event, `audit.export`). Each AuditEvent
 * carries the Settle action as a subtype, the actor as the agent, what it was about as the entity, and the
 * event's chain hashes as entity details, so an exported trail can be checked against the database later.
 */
import type { AuditEvent as FhirAuditEvent, Bundle, Coding } from '@medplum/fhirtypes';
import { DateTime } from 'luxon';
import { PeriodError, resolvePeriod } from '../analytics/period.ts';
import type { Clock } from '../domain/clock.ts';
import { AuditLog, type AuditEvent } from '../store/audit.ts';
import type { Database } from '../store/database.ts';
import { PracticeRepository } from '../store/practices.ts';
import { ApiError } from './problem.ts';
import type { AnyRoute, RouteContext } from './routes.ts';

/** Code systems of the exported AuditEvents. */
export const AUDIT_SYSTEMS = {
  action: 'https://settle.dev/fhir/CodeSystem/audit-action',
  actor: 'https://settle.dev/fhir/NamingSystem/audit-actor',
  entityType: 'https://settle.dev/fhir/CodeSystem/audit-entity-type',
  entityId: 'https://settle.dev/fhir/NamingSystem/audit-entity',
  eventId: 'https://settle.dev/fhir/NamingSystem/audit-event',
} as const;

const DCM = 'http://dicom.nema.org/resources/ontology/DCM';

/** The DICOM audit event type that fits a Settle action best (the binding is extensible). */
function eventType(action: string): Coding {
  if (/\.(view|open|show)$/.test(action)) return { system: DCM, code: '110110', display: 'Patient Record' };
  if (/\.export$/.test(action)) return { system: DCM, code: '110106', display: 'Export' };
  if (/^apikey\./.test(action)) return { system: DCM, code: '110137', display: 'User Security Attributes Changed' };
  return { system: DCM, code: '110100', display: 'Application Activity' };
}

/** C, R, U, D or E (FHIR audit-event-action) of a Settle action. */
function crud(action: string): FhirAuditEvent['action'] {
  const verb = action.slice(action.lastIndexOf('.') + 1);
  if (/^(create|issue|add)$/.test(verb)) return 'C';
  if (/^(view|open|show|list|export|verify)$/.test(verb)) return 'R';
  if (/^(revoke|delete|prune|remove)$/.test(verb)) return 'D';
  if (/^(update|status|change|reprocess|resolve)$/.test(verb)) return 'U';
  return 'E';
}

/** One stored audit event as a FHIR R4 AuditEvent. */
export function toFhirAuditEvent(event: AuditEvent, site: string): FhirAuditEvent {
  const person = !/^(system|cli|job)(:|$)/.test(event.actor);
  return {
    resourceType: 'AuditEvent',
    id: `settle-${event.id}`,
    type: eventType(event.action),
    subtype: [{ system: AUDIT_SYSTEMS.action, code: event.action }],
    action: crud(event.action),
    recorded: event.occurredAt.toISOString(),
    outcome: '0',
    agent: [{ who: { identifier: { system: AUDIT_SYSTEMS.actor, value: event.actor } }, requestor: person }],
    source: {
      site,
      observer: { display: 'Settle' },
      type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }],
    },
    entity: [{
      ...(event.entityId ? { what: { identifier: { system: `${AUDIT_SYSTEMS.entityId}/${event.entityType}`, value: event.entityId } } } : {}),
      type: { system: AUDIT_SYSTEMS.entityType, code: event.entityType },
      detail: [
        { type: 'settle-event-id', valueString: event.id },
        { type: 'detail', valueString: JSON.stringify(event.detail) },
        { type: 'prev-hash', valueString: event.prevHash },
        { type: 'hash', valueString: event.hash },
      ],
    }],
  };
}

/** A collection Bundle of AuditEvents, with a `next` link when the page is not the last. */
export function auditEventBundle(events: readonly AuditEvent[], site: string, now: Date, next?: string): Bundle<FhirAuditEvent> {
  return {
    resourceType: 'Bundle',
    type: 'collection',
    timestamp: now.toISOString(),
    ...(next ? { link: [{ relation: 'next', url: next }] } : {}),
    entry: events.map((event) => ({ resource: toFhirAuditEvent(event, site) })),
  };
}

interface AuditQuery {
  from?: string;
  to?: string;
  limit: number;
  after?: string;
}

/** The audit trail routes. */
export function auditRoutes(deps: { db: Database; clock: Clock }): AnyRoute[] {
  const audit = new AuditLog(deps.db, deps.clock);
  const practices = new PracticeRepository(deps.db.pool);
  return [
    {
      method: 'get',
      path: '/audit',
      summary: "The practice's audit trail for a period as a FHIR R4 Bundle of AuditEvent resources (oldest first, paged); the export is itself audited.",
      tag: 'audit',
      access: ['admin'],
      query: {
        type: 'object',
        additionalProperties: false,
        properties: {
          from: { type: 'string', format: 'date', description: 'First day (YYYY-MM-DD, practice time zone, inclusive). Default: the first day of the month 11 months back.' },
          to: { type: 'string', format: 'date', description: 'Last day (YYYY-MM-DD, practice time zone, inclusive). Default: today.' },
          limit: { type: 'integer', minimum: 1, maximum: 10000, default: 1000, description: 'Events per page.' },
          after: { type: 'string', pattern: '^[0-9]{1,18}$', description: 'Paging: the events after this event id (from the `next` link).' },
        },
      },
      responses: { 200: { description: 'A FHIR R4 Bundle (type collection) of AuditEvent resources.', contentType: 'application/fhir+json', schema: { type: 'object' } } },
      handler: async ({ principal, query, req, res }: RouteContext<unknown, AuditQuery>) => {
        const practice = (await practices.findById(principal!.practiceId))!;
        let period;
        try {
          period = resolvePeriod({ from: query.from, to: query.to }, deps.clock, practice.timeZone);
        } catch (error) {
          if (error instanceof PeriodError) throw new ApiError(400, 'invalid_request', 'The query is invalid.', [{ path: error.path, message: error.message }]);
          throw error;
        }
        const from = DateTime.fromISO(period.from, { zone: practice.timeZone }).toJSDate();
        const to = DateTime.fromISO(period.to, { zone: practice.timeZone }).plus({ days: 1 }).toJSDate();
        const events = await audit.list(practice.id, { from, to, limit: query.limit + 1, afterId: query.after });
        const page = events.slice(0, query.limit);
        let next: string | undefined;
        if (events.length > query.limit) {
          const params = new URLSearchParams({ from: period.from, to: period.to, limit: String(query.limit), after: page.at(-1)!.id });
          next = `${req.baseUrl}${req.path}?${params}`;
        }
        const bundle = auditEventBundle(page, practice.slug, deps.clock.now(), next);
        await audit.append({
          practiceId: practice.id,
          actor: `apikey:${principal!.keyId}`,
          action: 'audit.export',
          entityType: 'audit_trail',
          detail: { from: period.from, to: period.to, events: page.length, ...(query.after ? { after: query.after } : {}), format: 'fhir-bundle' },
        });
        res.status(200).type('application/fhir+json').send(JSON.stringify(bundle));
        return undefined;
      },
    },
  ];
}
