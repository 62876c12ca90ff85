import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Bundle, Patient } from '@medplum/fhirtypes';
import { ManualClock } from '../../../src/domain/clock.ts';
import { FhirError, redactUrl } from '../../../src/connectors/fhir/errors.ts';
import { FhirClient, parseRetryAfter, type FhirClientOptions } from '../../../src/connectors/fhir/fhir-client.ts';
import { createTokenProvider } from '../../../src/connectors/fhir/smart-auth.ts';
import { startSandboxEhr, type SandboxEhr } from '../../../src/sandbox-ehr/server.ts';
import { seedPractice, type SeedSummary } from '../../../src/sandbox-ehr/seed.ts';

describe('FHIR client against the sandbox EHR', () => {
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  let ehr: SandboxEhr;
  let seeded: SeedSummary;
  let sleeps: number[];

  before(async () => {
    ehr = await startSandboxEhr({
      clients: [{ clientId: 'settle', publicKeyPem: keys.publicKey.export({ type: 'spki', format: 'pem' }).toString(), kid: 'k1' }],
    });
    seeded = await seedPractice(ehr.repo, { patients: 40, seed: 2026 });
  });
  after(() => ehr.close());

  function client(over: Partial<FhirClientOptions> = {}): FhirClient {
    sleeps = [];
    return new FhirClient({
      baseUrl: ehr.baseUrl,
      auth: createTokenProvider({ method: 'smart-backend', tokenUrl: ehr.tokenUrl, clientId: 'settle', privateKey: keys.privateKey, kid: 'k1', alg: 'ES384', scope: 'system/*.rs' }),
      sleep: async (ms) => {
        sleeps.push(ms);
      },
      random: () => 1,
      ...over,
    });
  }

  it('follows three or more pages of HAPI-style next links exactly as given, every resource exactly once', async () => {
    const c = client();
    const pages: Bundle[] = [];
    const start = ehr.stats.fhirRequests.length;
    for await (const page of c.searchPages('Patient', { _count: 9, _sort: '_lastUpdated' })) pages.push(page);
    assert.equal(pages.length, Math.ceil(40 / 9));
    assert.ok(pages.length >= 3);
    const ids = pages.flatMap((p) => (p.entry ?? []).map((e) => e.resource!.id!));
    assert.equal(ids.length, 40);
    assert.equal(new Set(ids).size, 40);
    assert.deepEqual(new Set(ids), new Set(seeded.ids.Patient));
    // Ordered by lastUpdated, as asked.
    const stamps = pages.flatMap((p) => (p.entry ?? []).map((e) => e.resource!.meta!.lastUpdated!));
    assert.deepEqual(stamps, [...stamps].sort());
    // Each page after the first was requested at precisely the previous page's next link.
    const requested = ehr.stats.fhirRequests.slice(start).filter((r) => r.status === 200).map((r) => r.url);
    assert.equal(requested.length, pages.length);
    for (let i = 1; i < pages.length; i++) {
      const next = pages[i - 1]!.link!.find((l) => l.relation === 'next')!.url!;
      assert.match(next, /\/fhir\/R4\?_getpages=[0-9a-f-]+&_getpagesoffset=\d+&_count=9/);
      const u = new URL(next);
      assert.equal(requested[i], `${u.pathname}${u.search}`);
    }
    assert.equal(pages.at(-1)!.link!.find((l) => l.relation === 'next'), undefined);
  });

  it('yields resources across pages with a _lastUpdated filter', async () => {
    const c = client();
    const all: string[] = [];
    for await (const inv of c.searchResources('Invoice', { _count: 5 })) all.push(inv.meta!.lastUpdated!);
    assert.equal(all.length, seeded.invoices);
    const cut = [...all].sort()[Math.floor(all.length / 2)]!;
    const newer: string[] = [];
    for await (const inv of c.searchResources('Invoice', { _count: 4, _lastUpdated: `gt${cut}`, _sort: '_lastUpdated' })) newer.push(inv.meta!.lastUpdated!);
    assert.deepEqual(newer, all.filter((t) => t > cut).sort());
  });

  it('honours Retry-After on 429 through the injected sleep, then succeeds', async () => {
    const c = client();
    ehr.failNext(429, 2, 7);
    const patient = await c.read<Patient>('Patient', seeded.ids.Patient[0]!);
    assert.equal(patient.id, seeded.ids.Patient[0]);
    assert.deepEqual(sleeps, [7000, 7000]);
  });

  it('backs off exponentially with jitter on 503 without Retry-After, then succeeds', async () => {
    const c = client({ baseDelayMs: 100, random: () => 0.5 });
    ehr.failNext(503, 3);
    const pages: Bundle[] = [];
    for await (const page of c.searchPages('Account', { _count: 50 })) pages.push(page);
    assert.equal(pages[0]!.entry!.length, 40);
    assert.deepEqual(sleeps, [50, 100, 200]);
  });

  it('retries a failing next link, not the first page', async () => {
    const c = client();
    const pages: Bundle[] = [];
    const start = ehr.stats.fhirRequests.length;
    for await (const page of c.searchPages('Patient', { _count: 20 })) {
      pages.push(page);
      if (pages.length === 1) ehr.failNext(503, 1, 0);
    }
    assert.equal(pages.flatMap((p) => p.entry ?? []).length, 40);
    assert.deepEqual(sleeps, [0]);
    const seen = ehr.stats.fhirRequests.slice(start);
    assert.deepEqual(seen.map((r) => r.status), [200, 503, 200]);
    assert.equal(seen[1]!.url, seen[2]!.url);
    assert.match(seen[1]!.url, /_getpages=/);
  });

  it('gives up after maxAttempts with an OperationOutcome and a URL without PHI', async () => {
    const c = client({ maxAttempts: 3 });
    ehr.failNext(503, 5, 1);
    await assert.rejects(
      async () => {
        for await (const page of c.searchPages('Patient', { family: 'Gonzalez', birthdate: '1984-03-07', _count: 10 })) void page;
      },
      (err: unknown) => {
        assert.ok(err instanceof FhirError);
        assert.equal(err.status, 503);
        assert.equal(err.outcome.resourceType, 'OperationOutcome');
        assert.equal(err.outcome.issue[0]!.code, 'transient');
        assert.equal(err.url, `${ehr.baseUrl}/Patient?family=*&birthdate=*&_count=10`);
        assert.doesNotMatch(err.message, /Gonzalez|1984/);
        return true;
      },
    );
    assert.deepEqual(sleeps, [1000, 1000]);
    ehr.failNext(503, 0);
  });

  it('refuses a Retry-After longer than allowed', async () => {
    const c = client({ maxRetryAfterMs: 60_000 });
    ehr.failNext(429, 1, 3600);
    await assert.rejects(c.read('Patient', seeded.ids.Patient[0]!), (err: unknown) => err instanceof FhirError && err.status === 429 && /retry after 3600 s/.test(err.message));
    assert.deepEqual(sleeps, []);
  });

  it('reports an expired search (410) and a missing resource (404) as OperationOutcome errors', async () => {
    const c = client();
    await assert.rejects(c.get(`${ehr.baseUrl}?_getpages=not-a-search&_getpagesoffset=10&_count=10`), (err: unknown) => {
      assert.ok(err instanceof FhirError);
      assert.equal(err.status, 410);
      assert.equal(err.url, `${ehr.baseUrl}?_getpages=*&_getpagesoffset=10&_count=10`);
      return true;
    });
    await assert.rejects(c.read('Patient', 'does-not-exist'), (err: unknown) => err instanceof FhirError && err.status === 404 && err.outcome.issue[0]!.code === 'not-found');
  });
});

describe('FHIR client paging edge cases (scripted server)', () => {
  function scripted(pages: Record<string, Bundle>): { fetch: typeof fetch; urls: string[] } {
    const urls: string[] = [];
    return {
      urls,
      fetch: async (input) => {
        const url = String(input);
        urls.push(url);
        const body = pages[url];
        return new Response(JSON.stringify(body ?? { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] }), {
          status: body ? 200 : 404,
          headers: { 'content-type': 'application/fhir+json' },
        });
      },
    };
  }
  const page = (ids: string[], next?: string): Bundle => ({
    resourceType: 'Bundle',
    type: 'searchset',
    entry: ids.map((id) => ({ resource: { resourceType: 'Patient', id }, search: { mode: 'match' } })),
    ...(next ? { link: [{ relation: 'next', url: next }] } : {}),
  });

  it('follows opaque cursors and relative links as given', async () => {
    const base = 'https://ehr.example.org/fhir/R4';
    const s = scripted({
      [`${base}/Patient?_count=2`]: page(['a', 'b'], `${base}/Patient?cursor=eyJwIjoyfQ%3D%3D&_count=2`),
      [`${base}/Patient?cursor=eyJwIjoyfQ%3D%3D&_count=2`]: page(['c', 'd'], 'Patient?page=opaque%2Ftoken'),
      [`${base}/Patient?page=opaque%2Ftoken`]: page(['e']),
    });
    const c = new FhirClient({ baseUrl: `${base}/`, fetch: s.fetch });
    const ids: string[] = [];
    for await (const p of c.searchResources('Patient', { _count: 2 })) ids.push(p.id!);
    assert.deepEqual(ids, ['a', 'b', 'c', 'd', 'e']);
    assert.equal(s.urls[1], `${base}/Patient?cursor=eyJwIjoyfQ%3D%3D&_count=2`);
  });

  it('refuses a next link to another origin and a next link that loops', async () => {
    const base = 'https://ehr.example.org/fhir/R4';
    const foreign = new FhirClient({ baseUrl: base, fetch: scripted({ [`${base}/Patient`]: page(['a'], 'https://evil.example.com/steal') }).fetch });
    await assert.rejects(async () => {
      for await (const p of foreign.searchPages('Patient')) void p;
    }, /another origin/);
    const loop = new FhirClient({ baseUrl: base, fetch: scripted({ [`${base}/Patient`]: page(['a'], `${base}/Patient`) }).fetch });
    await assert.rejects(async () => {
      for await (const p of loop.searchPages('Patient')) void p;
    }, /already followed/);
  });

  it('parses Retry-After as seconds or an HTTP date, and redacts URLs', () => {
    const now = new Date('2026-03-01T12:00:00Z');
    assert.equal(parseRetryAfter('12', now), 12_000);
    assert.equal(parseRetryAfter('Sun, 01 Mar 2026 12:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Sun, 01 Mar 2026 11:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter(null, now), undefined);
    assert.equal(redactUrl('https://x.org/fhir/Patient?name=Maria&_count=5&_lastUpdated=gt2026-01-01'), 'https://x.org/fhir/Patient?name=*&_count=5&_lastUpdated=gt2026-01-01');
  });

  it('uses the injected clock for a Retry-After date', async () => {
    const clock = new ManualClock(new Date('2026-03-01T12:00:00Z'));
    let calls = 0;
    const sleeps: number[] = [];
    const c = new FhirClient({
      baseUrl: 'https://ehr.example.org/fhir/R4',
      clock,
      sleep: async (ms) => void sleeps.push(ms),
      fetch: async () =>
        ++calls === 1
          ? new Response('', { status: 503, headers: { 'retry-after': 'Sun, 01 Mar 2026 12:00:45 GMT' } })
          : new Response(JSON.stringify({ resourceType: 'Patient', id: 'p' }), { status: 200 }),
    });
    assert.equal((await c.read('Patient', 'p')).id, 'p');
    assert.deepEqual(sleeps, [45_000]);
  });
});
