import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { problemHandler } from '../../src/api/problem.ts';
import { createLogger } from '../../src/config/logger.ts';
import { createTestDatabase } from '../support/databases.ts';
import { startTestApi, type TestApi } from '../support/api.ts';

const PATIENT = {
  name: 'Maria Gonzalez',
  phone: '(617) 555-0134',
  email: 'maria.gonzalez@example.com',
  address: '12 Elm Street',
  birthDate: '1984-03-07',
};

describe('what the engine logs about requests', () => {
  let t: TestApi;
  let drop: () => Promise<void>;
  const stream = new PassThrough();
  let output = '';
  stream.on('data', (chunk) => (output += chunk));
  const logger = createLogger({ level: 'debug', stream });

  before(async () => {
    const handle = await createTestDatabase('pglite');
    drop = handle.drop;
    t = await startTestApi(handle.db, { logger });
  });
  after(async () => {
    await t.close();
    await drop();
  });

  it('never carries a patient’s name, phone, email, address or birth date, whatever the request holds', async () => {
    const phi = encodeURIComponent(`${PATIENT.name} ${PATIENT.phone} ${PATIENT.email} ${PATIENT.address} ${PATIENT.birthDate}`);
    const admin = { authorization: `Bearer ${t.keys.admin}`, 'content-type': 'application/json' };
    await fetch(`${t.url}/patients/${phi}?dob=${PATIENT.birthDate}`);
    await fetch(`${t.url}/healthz?name=${phi}&phone=${encodeURIComponent(PATIENT.phone)}`);
    await fetch(`${t.url}/apikeys`, { method: 'POST', headers: admin, body: JSON.stringify({ name: PATIENT.name, role: PATIENT.email, note: PATIENT.address }) });
    await fetch(`${t.url}/apikeys`, { method: 'POST', headers: admin, body: `{"name": "${PATIENT.name}", "phone": "${PATIENT.phone}` });
    await fetch(`${t.url}/apikeys/${phi}`, { method: 'DELETE', headers: admin });
    // An unexpected failure whose message quotes a patient.
    const failure = new Error(`could not reach ${PATIENT.name} at ${PATIENT.phone} / ${PATIENT.email}, ${PATIENT.address}, born ${PATIENT.birthDate}`);
    const res = { headersSent: false, status() { return this; }, type() { return this; }, send() { return this; } };
    problemHandler(logger)(failure, { method: 'GET', route: { path: '/balances/:id' } } as never, res as never, () => {});
    await new Promise((resolve) => setImmediate(resolve));

    const lines = output.trim().split('\n');
    assert.ok(lines.length >= 6, `expected request and error lines, got ${lines.length}`);
    for (const line of lines) JSON.parse(line);
    assert.ok(lines.some((l) => l.includes('"route":"/apikeys"')), 'requests are logged by route pattern');
    assert.ok(lines.some((l) => l.includes('request failed')), 'the unexpected failure is logged');
    for (const value of [PATIENT.name, 'Gonzalez', PATIENT.phone, '555-0134', PATIENT.email, PATIENT.address, PATIENT.birthDate]) {
      assert.ok(!output.includes(value), `the log contains ${value}`);
    }
  });
});
