import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { it } from 'node:test';
import { analyticsRefreshJob, dueRollups } from '../../src/analytics/job.ts';
import { createLogger } from '../../src/config/logger.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

describeOnEachDatabase('The analytics.refresh job', (db) => {
  it('refreshes the practices never refreshed, then each once its rollup is a minute old and five times its refresh time', async () => {
    const practices = new PracticeRepository(db().pool);
    const small = (await practices.create({ slug: 'small', name: 'Small', timeZone: 'UTC' })).id;
    const large = (await practices.create({ slug: 'large', name: 'Large', timeZone: 'UTC' })).id;
    const lines: string[] = [];
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => lines.push(...chunk.toString().trim().split('\n')));
    const job = analyticsRefreshJob({ db: db(), logger: createLogger({ level: 'info', stream }) });
    assert.deepEqual((await dueRollups(db())).sort(), [small, large].sort());
    await job.run({}, { jobId: 'j1', failures: 0 });
    assert.deepEqual(await dueRollups(db()), [], 'just refreshed: nothing due');

    // Two minutes later: the small practice (refreshed in 1 s) is due; the large one (refreshed in 30 s) waits 2.5 minutes.
    await db().pool.query(`UPDATE analytics_refreshes SET as_of = now() - interval '2 minutes', duration_ms = CASE practice_id WHEN $1::uuid THEN 1000 ELSE 30000 END`, [small]);
    assert.deepEqual(await dueRollups(db()), [small]);
    await db().pool.query(`UPDATE analytics_refreshes SET as_of = now() - interval '151 seconds' WHERE practice_id = $1`, [large]);
    assert.deepEqual((await dueRollups(db())).sort(), [small, large].sort());

    // On demand, one practice whatever its age.
    await job.run({}, { jobId: 'j2', failures: 0 });
    await job.run({ practiceId: small }, { jobId: 'j3', failures: 0 });
    await new Promise((resolve) => setImmediate(resolve));
    const logged = lines.map((l) => JSON.parse(l) as { message: string; practiceId: string }).filter((l) => l.message === 'analytics rollup refreshed');
    assert.deepEqual(logged.map((l) => l.practiceId).slice(2).sort(), [small, large, small].sort());
    assert.equal(logged.length, 5);
  });
});
