/**
 * The live demo's background loading: the first slice and the batches cover the whole practice once; a world
 * started with the first slice holds exactly those patients, and a batch added later is what an incremental
 * sync of the sandbox EHR (`_lastUpdated` after the start) returns.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Operator } from '@medplum/core';
import { batchCount, inFirstSlice, loadedPatients, loadingText, progressAfter, type LoadPlan } from '../../src/demo/loader.ts';
import { startDemoWorld } from '../../src/demo/world.ts';
import { ROOT } from '../support/cli.ts';

const PLAN: LoadPlan = { patients: 50, firstSlice: 5, patientsPerBatch: 20, pastVisitDays: 9, visitsPerPastDay: 2 };
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('the live demo loads the rest of the practice in batches', () => {
  it('spreads the first slice over the practice, and the batches bring every other patient once', () => {
    const slice = Array.from({ length: PLAN.patients }, (_, i) => i).filter((i) => inFirstSlice(PLAN, i));
    assert.deepEqual(slice, [0, 10, 20, 30, 40]);
    assert.equal(batchCount(PLAN), 3);
    const all = loadedPatients(PLAN, batchCount(PLAN));
    assert.ok(Array.from({ length: PLAN.patients }, (_, i) => i).every(all), 'after the last batch every patient is in');
    assert.equal([...Array(PLAN.patients).keys()].filter(loadedPatients(PLAN, 1)).length, 25);
    assert.deepEqual(progressAfter(PLAN, 0), { batches: 3, batchesDone: 0, patientsInEhr: 5, patients: 50, pastVisitsSent: 0, pastVisits: 18 });
    assert.deepEqual(progressAfter(PLAN, 3), { batches: 3, batchesDone: 3, patientsInEhr: 50, patients: 50, pastVisitsSent: 18, pastVisits: 18 });
    assert.match(loadingText(progressAfter(PLAN, 1)), /still loading: 25 of 50 patients .* 6 of 18 past visits/);
  });

  it('starts the sandbox EHR with the slice; a batch added later is newer than the start, so the next sync brings it', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'settle-demo-loader-'));
    dirs.push(dataDir);
    const start = new Date('2026-01-01T00:00:00Z');
    const world = await startDemoWorld({ dataDir, configDir: ROOT, patients: PLAN.patients, seed: 42, start, include: loadedPatients(PLAN, 0) });
    try {
      const patients = await world.sandbox.repo.searchResources({ resourceType: 'Patient', count: 1000 });
      assert.equal(patients.length, 5);
      assert.deepEqual(new Set(patients.map((p) => p.id)), new Set([0, 10, 20, 30, 40].map((i) => world.seeded.ids.Patient[i])), 'the slice, as seeded');
      // The seed's timestamps span a few days from the start (0.1 day a patient); a month later is after all of them.
      const afterSeed = new Date(start.getTime() + 30 * 86_400_000);
      const added = await world.addPatients([1, 2]);
      assert.ok(added >= 4, `each patient comes with an account at least (added ${added})`);
      const newer = await world.sandbox.repo.searchResources({ resourceType: 'Patient', count: 1000, filters: [{ code: '_lastUpdated', operator: Operator.GREATER_THAN, value: afterSeed.toISOString() }] });
      assert.deepEqual(newer.map((p) => p.id).sort(), [world.seeded.ids.Patient[1], world.seeded.ids.Patient[2]].sort());
    } finally {
      await world.close();
    }
  });
});
