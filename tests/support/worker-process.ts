/**
 * A real `settle worker` process with one extra job kind, `test.probe`, that records which process ran
 * each job in `job_probe_runs` (and when it started, in `job_probe_starts`). Used to watch several workers share one database.
 */
import { startEngine } from '../../src/cli/engine.ts';
import { createLogger } from '../../src/config/logger.ts';
import { loadSettings } from '../../src/config/settings.ts';

const settings = loadSettings();
const logger = createLogger({ level: 'warn', stream: process.stderr });
const engine = await startEngine({
  mode: 'worker',
  settings,
  logger,
  extraJobs: [
    {
      name: 'test.probe',
      async run(data: { seq: number; sleepMs?: number }) {
        await engine.db.pool.query('INSERT INTO job_probe_starts (seq, pid) VALUES ($1, $2)', [data.seq, process.pid]);
        await new Promise((resolve) => setTimeout(resolve, data.sleepMs ?? 20 + Math.random() * 20));
        await engine.db.pool.query('INSERT INTO job_probe_runs (seq, pid) VALUES ($1, $2)', [data.seq, process.pid]);
      },
    },
  ],
});
await engine.ready;
process.stdout.write('worker ready\n');
process.once('SIGTERM', () => {
  engine.stop().then(() => process.exit(0), () => process.exit(1));
});
