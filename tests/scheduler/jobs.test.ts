import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MappingRegistry } from '../../src/mapping/load.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';
import { it } from 'node:test';
import { silentLogger } from '../../src/config/logger.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { JOBS, registerStageJobs } from '../../src/scheduler/jobs.ts';
import { JobRegistry } from '../../src/scheduler/scheduler.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

describeOnEachDatabase('stage jobs', (db) => {
  it('prune finished one-off jobs after a week, keeping recent history and schedules', async () => {
    const clock = new ManualClock(new Date('2026-06-15T12:00:00Z'));
    const registry = new JobRegistry();
    registerStageJobs(registry, { db: db(), clock, logger: silentLogger(), connectors: [], configDir: '.', cipher: new PhiCipher({ encryptionKeys: [{ id: 't', key: randomBytes(32) }], blindIndexKey: randomBytes(32) }), mappings: new MappingRegistry([]), profiles: [], policies: [], enqueueSoon: () => {} });
    const insert = (name: string, type: string, nextRunAt: string | null, finishedAt: string | null) =>
      db().pool.query('INSERT INTO agenda_jobs (name, type, next_run_at, last_finished_at) VALUES ($1, $2, $3, $4)', [name, type, nextRunAt, finishedAt]);
    await insert('old.done', 'normal', null, '2026-06-01T00:00:00Z');
    await insert('recent.done', 'normal', null, '2026-06-10T00:00:00Z');
    await insert('old.waiting', 'normal', '2026-06-16T00:00:00Z', '2026-06-01T00:00:00Z');
    await insert('daily.schedule', 'single', '2026-06-16T00:00:00Z', '2026-05-01T00:00:00Z');
    const prune = registry.list().find((job) => job.name === JOBS.prune)!;
    await prune.run({} as never, { jobId: 'test', failures: 0 });
    const { rows } = await db().pool.query('SELECT name FROM agenda_jobs ORDER BY name');
    assert.deepEqual(rows.map((r) => r.name), ['daily.schedule', 'old.waiting', 'recent.done']);
  });
});
