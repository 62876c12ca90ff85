/**
 * `settle writebacks list|replay` on the embedded database, as a person at the practice would run them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { prepareDatabase } from '../../src/cli/engine.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { WritebackDelivery } from '../../src/writeback/delivery.ts';
import { openDatabase } from '../../src/store/database.ts';
import { ROOT, runCli } from '../support/cli.ts';
import { deliveryDeps, fhirConnector, paidPayment, seedHousehold } from './fixtures.ts';

describe('settle writebacks', () => {
  it('lists a dead-lettered write-back, replays it once, and refuses a second replay', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'settle-writebacks-cli-'));
    const clock = new ManualClock(new Date());
    const db = await openDatabase({ databaseUrl: undefined, dataDir, poolSize: 3 });
    let paymentId: string;
    try {
      await prepareDatabase(db);
      const h = await seedHousehold(db, clock, 'wb-cli');
      paymentId = (await paidPayment(db, clock, h, 2_500)).id;
      // Nothing listens on port 1: refused, and with maxAttempts 1 dead at once.
      const delivery = new WritebackDelivery(deliveryDeps(db, clock, [fhirConnector('wb-cli', 'http://127.0.0.1:1/fhir', { maxAttempts: 1 })], { fhir: { sleep: async () => {} } }));
      assert.equal((await delivery.deliverDue()).dead, 1);
    } finally {
      await db.close();
    }
    const env = { DATABASE_URL: undefined, SETTLE_ENCRYPTION_KEYS: undefined, SETTLE_BLIND_INDEX_KEY: undefined, SETTLE_CONFIG_DIR: ROOT, SETTLE_DATA_DIR: dataDir };

    const listed = await runCli(['writebacks', 'list', '--practice', 'wb-cli', '--json'], env);
    assert.equal(listed.code, 0, listed.stderr);
    const body = JSON.parse(listed.stdout);
    assert.equal(body.counts.dead, 1);
    assert.deepEqual(body.writebacks.map((w: { writebackId: string; status: string }) => [w.writebackId, w.status]), [[`payment-${paymentId}`, 'dead']]);

    const text = await runCli(['writebacks', 'list', '--practice', 'wb-cli', '--status', 'dead'], env);
    assert.match(text.stdout, /^pending 0 {2}failed 0 {2}dead 1 {2}delivered 0$/m);
    assert.match(text.stdout, new RegExp(`payment-${paymentId} +dead +1 tries +25\\.00 USD`));

    const replayed = await runCli(['writebacks', 'replay', `payment-${paymentId}`, '--practice', 'wb-cli'], env);
    assert.equal(replayed.code, 0, replayed.stderr);
    assert.match(replayed.stdout, /^Replayed payment-.*: pending, due now/);
    const again = await runCli(['writebacks', 'replay', `payment-${paymentId}`, '--practice', 'wb-cli'], env);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /is pending: only failed or dead write-backs are replayed/);
  });
});
