import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PaymentReconciliation } from '@medplum/fhirtypes';
import { FhirError, FhirWriteUnknownError } from '../../../src/connectors/fhir/errors.ts';
import { FhirClient, type FhirClientOptions } from '../../../src/connectors/fhir/fhir-client.ts';
import { startSandboxEhr, type SandboxEhr } from '../../../src/sandbox-ehr/server.ts';

const SYSTEM = 'https://settle.dev/fhir/sid/payment';

function payment(value: string): PaymentReconciliation {
  return {
    resourceType: 'PaymentReconciliation',
    status: 'active',
    created: '2026-06-01T10:00:00Z',
    identifier: [{ system: SYSTEM, value }],
    paymentDate: '2026-06-01',
    paymentAmount: { value: 42.5, currency: 'USD' },
  };
}

describe('FHIR writes against the sandbox EHR', () => {
  let ehr: SandboxEhr;
  let sleeps: number[];
  before(async () => {
    ehr = await startSandboxEhr();
  });
  after(() => ehr.close());

  function client(over: Partial<FhirClientOptions> = {}): FhirClient {
    sleeps = [];
    return new FhirClient({ baseUrl: ehr.baseUrl, sleep: async (ms) => void sleeps.push(ms), random: () => 1, ...over });
  }
  const posts = () => ehr.stats.fhirRequests.filter((r) => r.method === 'POST').length;
  const matching = async (value: string) =>
    (await ehr.repo.searchResources<PaymentReconciliation>({ resourceType: 'PaymentReconciliation' })).filter((p) => p.identifier?.some((i) => i.system === SYSTEM && i.value === value)).length;

  it('a conditional create creates once: the second finds the first', async () => {
    const c = client();
    const first = await c.create(payment('pay-1'), { ifNoneExist: { identifier: `${SYSTEM}|pay-1` } });
    assert.equal(first.status, 201);
    assert.equal(first.created, true);
    assert.ok(first.resource?.id);
    assert.match(first.location ?? '', /\/PaymentReconciliation\/[^/]+\/_history\//);
    assert.equal(first.versionId, first.resource?.meta?.versionId);
    const second = await c.create(payment('pay-1'), { ifNoneExist: { identifier: `${SYSTEM}|pay-1` } });
    assert.equal(second.status, 200);
    assert.equal(second.created, false);
    assert.equal(second.resource?.id, first.resource?.id);
    assert.equal(await matching('pay-1'), 1);
  });

  it('retries a conditional create after a 503, and any write after a 429 with Retry-After', async () => {
    const c = client();
    ehr.failNext(503, 1);
    const conditional = await c.create(payment('pay-2'), { ifNoneExist: { identifier: `${SYSTEM}|pay-2` } });
    assert.equal(conditional.status, 201);
    assert.deepEqual(sleeps, [500]);
    sleeps.length = 0;
    ehr.failNext(429, 1, 2);
    const plain = await c.create(payment('pay-3'));
    assert.equal(plain.status, 201);
    assert.deepEqual(sleeps, [2000]);
    assert.equal(await matching('pay-3'), 1);
  });

  it('never retries an unconditional create whose outcome is unknown', async () => {
    const c = client();
    const before = posts();
    ehr.failNext(503, 1);
    await assert.rejects(c.create(payment('pay-4')), (error: unknown) => {
      assert.ok(error instanceof FhirWriteUnknownError);
      assert.equal(error.status, 503);
      return true;
    });
    assert.equal(posts() - before, 1, 'sent once');
    assert.deepEqual(sleeps, []);
    let calls = 0;
    const broken = client({
      fetch: (async () => {
        calls++;
        throw new TypeError('socket hang up');
      }) as typeof fetch,
    });
    await assert.rejects(broken.create(payment('pay-5')), FhirWriteUnknownError);
    assert.equal(calls, 1);
    await assert.rejects(broken.create(payment('pay-5'), { ifNoneExist: { identifier: `${SYSTEM}|pay-5` } }), (e: unknown) => e instanceof FhirError && !(e instanceof FhirWriteUnknownError));
    assert.equal(calls, 1 + 5, 'a conditional create is retried up to maxAttempts');
  });

  it('updates by id with If-Match, refusing a stale version, and updates conditionally by identifier', async () => {
    const c = client();
    const created = await c.create(payment('pay-6'));
    const id = created.resource!.id!;
    const v1 = created.versionId!;
    const updated = await c.update({ ...created.resource!, status: 'cancelled' }, { ifMatch: v1 });
    assert.equal(updated.status, 200);
    assert.notEqual(updated.versionId, v1);
    await assert.rejects(c.update({ ...created.resource!, status: 'active' }, { ifMatch: v1 }), (e: unknown) => e instanceof FhirError && e.status === 412);
    const upserted = await c.conditionalUpdate(payment('pay-7'), { identifier: `${SYSTEM}|pay-7` });
    assert.equal(upserted.created, true);
    const again = await c.conditionalUpdate({ ...payment('pay-7'), status: 'cancelled' }, { identifier: `${SYSTEM}|pay-7` });
    assert.equal(again.status, 200);
    assert.equal(again.resource?.id, upserted.resource?.id);
    assert.equal(again.resource?.status, 'cancelled');
    assert.equal((await ehr.repo.readResource<PaymentReconciliation>('PaymentReconciliation', id)).status, 'cancelled');
  });
});
