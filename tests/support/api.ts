/**
 * Starts the real API on a loopback port over a test database.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createApi, type Api } from '../../src/api/app.ts';
import { EngineMetrics } from '../../src/api/metrics.ts';
import type { Logger } from '../../src/config/logger.ts';
import { silentLogger } from '../../src/config/logger.ts';
import type { Role } from '../../src/domain/access.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { ApiKeyRepository } from '../../src/store/api-keys.ts';
import type { Database } from '../../src/store/database.ts';
import { PracticeRepository } from '../../src/store/practices.ts';
import { ROOT } from './cli.ts';
import { randomBytes } from 'node:crypto';
import { loadMappings } from '../../src/mapping/load.ts';
import { PhiCipher } from '../../src/store/phi-crypto.ts';

/** A running API with a key of each role. */
export interface TestApi {
  api: Api;
  url: string;
  keys: Record<Role, string>;
  practiceId: string;
  close(): Promise<void>;
}

/** Serves the API over `db` on 127.0.0.1 with a fresh practice and one key per role. */
export async function startTestApi(db: Database, options: { logger?: Logger; slug?: string } = {}): Promise<TestApi> {
  const clock = new ManualClock(new Date('2026-06-01T14:00:00Z'));
  const practice = await new PracticeRepository(db.pool).ensure({ slug: options.slug ?? 'api-test', name: 'API Test Clinic' });
  const repository = new ApiKeyRepository(db.pool, clock);
  const keys = {} as Record<Role, string>;
  for (const role of ['admin', 'staff', 'integration'] as const) keys[role] = (await repository.create(practice.id, `${role} key`, role)).secret;
  const api = createApi({
    configDir: ROOT,
    cipher: new PhiCipher({ encryptionKeys: [{ id: 'test', key: randomBytes(32) }], blindIndexKey: randomBytes(32) }),
    mappings: loadMappings(ROOT),
    db,
    clock,
    logger: options.logger ?? silentLogger(),
    metrics: new EngineMetrics(),
    version: 'test',
    readiness: {
      database: async () => ({ ok: true, detail: 'reachable' }),
      migrations: async () => ({ ok: true, detail: 'current' }),
      scheduler: () => ({ ok: true, detail: 'running' }),
    },
  });
  const server: Server = api.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    api,
    url,
    keys,
    practiceId: practice.id,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
