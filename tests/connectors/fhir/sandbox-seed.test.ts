import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Invoice, Resource } from '@medplum/fhirtypes';
import { MemoryRepository } from '@medplum/fhir-router';
import { amountToCents, seedPractice } from '../../../src/sandbox-ehr/seed.ts';
import { startSandboxEhr } from '../../../src/sandbox-ehr/server.ts';

async function dump(repo: MemoryRepository, ids: Record<string, string[]>): Promise<Resource[]> {
  const out: Resource[] = [];
  for (const [type, list] of Object.entries(ids)) for (const id of list) out.push(await repo.readResource(type, id));
  return out;
}

describe('sandbox EHR practice seeding', () => {
  it('is deterministic for a seed, ids and timestamps included, and differs between seeds', async () => {
    const [a, b, c] = [new MemoryRepository(), new MemoryRepository(), new MemoryRepository()];
    const sa = await seedPractice(a, { patients: 50, seed: 11 });
    const sb = await seedPractice(b, { patients: 50, seed: 11 });
    const sc = await seedPractice(c, { patients: 50, seed: 12 });
    assert.deepEqual(sa, sb);
    assert.deepEqual(await dump(a, sa.ids), await dump(b, sb.ids));
    assert.notDeepEqual(sa.ids.Patient, sc.ids.Patient);
    assert.equal(sa.patients, 50);
    assert.equal(sa.accounts, 50);
    assert.ok(sa.invoices > 30, `a practice has invoices (${sa.invoices})`);
  });

  it('writes invoices with line items whose USD amounts are exact cents and add up', async () => {
    const repo = new MemoryRepository();
    const s = await seedPractice(repo, { patients: 60, seed: 3 });
    let balance = 0;
    let withInsurance = 0;
    for (const id of s.ids.Invoice) {
      const inv = await repo.readResource<Invoice>('Invoice', id);
      assert.ok(inv.lineItem?.length);
      let gross = 0;
      let net = 0;
      for (const line of inv.lineItem!) {
        for (const pc of line.priceComponent!) {
          assert.equal(pc.amount!.currency, 'USD');
          const cents = amountToCents(pc.amount!.value!); // throws on more than 2 decimals
          assert.ok(cents > 0);
          if (pc.type === 'base') {
            gross += cents;
            net += cents;
          } else {
            assert.equal(pc.type, 'deduction');
            withInsurance++;
            net -= cents;
          }
        }
      }
      assert.equal(amountToCents(inv.totalGross!.value!), gross);
      assert.equal(amountToCents(inv.totalNet!.value!), net);
      assert.equal(inv.totalNet!.currency, 'USD');
      assert.match(inv.subject!.reference!, /^Patient\//);
      assert.match(inv.account!.reference!, /^Account\//);
      balance += net;
    }
    assert.equal(balance, s.patientBalanceCents);
    assert.ok(withInsurance > 0, 'some lines carry an insurance payment');
    assert.equal(amountToCents(150), 15_000);
    assert.equal(amountToCents(0.1), 10);
    assert.throws(() => amountToCents(1.005), /2-decimal/);
  });

  it('serves the seeded data through the sandbox with references that resolve', async () => {
    const ehr = await startSandboxEhr();
    try {
      const s = await seedPractice(ehr.repo, { patients: 5, seed: 99 });
      const invoice = (await (await fetch(`${ehr.baseUrl}/Invoice/${s.ids.Invoice[0]}`)).json()) as Invoice;
      const patient = await fetch(`${ehr.baseUrl}/${invoice.subject!.reference}`);
      assert.equal(patient.status, 200);
      const account = await fetch(`${ehr.baseUrl}/${invoice.account!.reference}`);
      assert.equal(account.status, 200);
      const byPatient = (await (await fetch(`${ehr.baseUrl}/Invoice?subject=${invoice.subject!.reference}`)).json()) as { total: number };
      assert.ok(byPatient.total >= 1);
    } finally {
      await ehr.close();
    }
  });
});
