import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogger, redact, silentLogger, type Logger } from '../../src/config/logger.ts';

/** A logger whose JSON lines are collected, and a way to read them once written. */
function capturedLogger(level: 'error' | 'warn' | 'info' | 'debug' = 'debug'): { logger: Logger; lines(): Promise<string[]> } {
  let output = '';
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      output += String(chunk);
      callback();
    },
  });
  const logger = createLogger({ level, stream });
  return {
    logger,
    async lines() {
      await new Promise((resolve) => setImmediate(resolve));
      return output.split('\n').filter((line) => line !== '');
    },
  };
}

const patientId = '5f1c0e5e-8d1b-4a39-9a57-1b2c3d4e5f60';
const balanceId = 'bal_01HZY3K9Q7R2';
const maria = {
  given: 'Maria',
  family: 'Gonzalez',
  phone: '(617) 555-0134',
  email: 'maria.gonzalez@example.com',
  street: '12 Elm Street',
  city: 'Springfield',
  birthDate: '1984-03-07',
};
/** Every form a seeded value could leak in. */
const NEEDLES = [
  'Maria',
  'Gonzalez',
  '555-0134',
  '5550134',
  '555 0134',
  'maria.gonzalez',
  'example.com',
  'Elm Street',
  'Springfield',
  '01103',
  '1984-03-07',
  '03/07/1984',
];

function assertNoPhi(output: string): void {
  for (const needle of NEEDLES) {
    assert.ok(!output.toLowerCase().includes(needle.toLowerCase()), `log output contains "${needle}":\n${output}`);
  }
}

describe('logger', () => {
  it('keeps a patient out of the log however she is logged, while ids, level and timestamp survive', async () => {
    const { logger, lines } = capturedLogger();
    const fhirPatient = {
      resourceType: 'Patient',
      id: patientId,
      name: [{ use: 'official', given: [maria.given], family: maria.family, text: `${maria.given} ${maria.family}` }],
      telecom: [
        { system: 'phone', value: maria.phone },
        { system: 'email', value: maria.email },
      ],
      address: [{ line: [maria.street], city: maria.city, postalCode: '01103' }],
      birthDate: maria.birthDate,
    };
    const account = { resourceType: 'Account', id: 'acct-9', subject: [{ reference: `Patient/${patientId}`, display: `${maria.given} ${maria.family}` }] };

    // Flat metadata, in camelCase, snake_case and other spellings.
    logger.info('balance imported', {
      patientId,
      balanceId,
      firstName: maria.given,
      last_name: maria.family,
      PHONE: maria.phone,
      'email-address': maria.email,
      address: `${maria.street}, ${maria.city}`,
      dob: maria.birthDate,
      zip: '01103',
    });
    // Nested: FHIR resources and arrays of contacts.
    logger.debug('patient fetched', { patientId, resource: fhirPatient, account, contacts: [{ guarantor: { fullName: 'Maria Gonzalez', mobilePhone: '6175550134' } }] });
    // Inside message strings, in several formats.
    logger.warn(`SMS to ${maria.phone} failed; retrying 617-555-0134, +16175550134 and 6175550134`, { balanceId });
    logger.warn(`email to ${maria.email} bounced; patient born ${maria.birthDate} (03/07/1984) lives at ${maria.street}`);
    logger.info('reminder queued for %s', maria.email, { balanceId });
    logger.info('payload %j', fhirPatient);
    // Inside errors: logged alone, as the metadata, nested, with a cause and with PHI-carrying properties.
    logger.error(new Error(`Twilio rejected ${maria.phone}`, { cause: new Error(`lookup of ${maria.email} failed`) }));
    logger.error('delivery failed', new Error(`SMTP 550 ${maria.email}`));
    logger.error('job failed', {
      jobId: 'job-17',
      error: Object.assign(new RangeError(`birth date ${maria.birthDate} is in the future`), { code: 'E_DOB', patient: fhirPatient }),
    });
    // A child logger carrying PHI in its default metadata.
    logger.child({ requestId: 'req-1', patientName: 'Maria Gonzalez' }).info('pay page opened', { balanceId });

    const output = await lines();
    assert.equal(output.length, 10);
    assertNoPhi(output.join('\n'));

    const entries = output.map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const entry of entries) {
      assert.match(String(entry.level), /^(error|warn|info|debug)$/);
      assert.match(String(entry.timestamp), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      assert.ok(Math.abs(Date.parse(String(entry.timestamp)) - Date.now()) < 60_000);
    }
    const joined = output.join('\n');
    assert.ok(joined.includes(patientId), 'the patient id survives');
    assert.ok(joined.includes(balanceId), 'the balance id survives');
    assert.equal(entries[0]?.balanceId, balanceId);
    assert.equal(entries[0]?.firstName, '[redacted]');
    assert.deepEqual((entries[1]?.resource as Record<string, unknown>).id, patientId);
    assert.equal(entries[2]?.message, 'SMS to [phone] failed; retrying [phone], [phone] and [phone]');
    assert.equal(entries[3]?.message, 'email to [email] bounced; patient born [date] ([date]) lives at [address]');
    assert.equal(entries[4]?.message, 'reminder queued for [email]');
    assert.equal(entries[6]?.message, 'Twilio rejected [phone]');
    assert.match(String(entries[6]?.stack), /^Error: Twilio rejected \[phone\]\n\s+at /);
    assert.equal((entries[6]?.cause as Record<string, unknown>).message, 'lookup of [email] failed');
    assert.equal(entries[7]?.message, 'delivery failed SMTP 550 [email]');
    const nested = entries[8]?.error as Record<string, unknown>;
    assert.deepEqual([nested.type, nested.code, nested.message], ['RangeError', 'E_DOB', 'birth date [date] is in the future']);
    assert.equal(entries[9]?.requestId, 'req-1');
  });

  it('keeps timestamps, amounts and identifiers that only resemble PHI', async () => {
    const { logger, lines } = capturedLogger();
    const values = {
      syncedAt: '2024-05-01T10:11:12.000Z',
      since: '2024-05-01 10:11:12',
      epochSeconds: '1712345678',
      epochMillis: '1712345678901',
      amount: '150.00',
      controlId: 'MSG00001',
      uuid: '123e4567-e89b-12d3-a456-426614174000',
      username: 'frontdesk',
      connectorName: 'epic-sandbox',
      practiceName: 'Springvale Family Medicine',
      hasEmail: true,
      cents: 6175550134,
    };
    logger.info('sync finished', values);
    const [line] = await lines();
    const entry = JSON.parse(line ?? '{}') as Record<string, unknown>;
    for (const [key, value] of Object.entries(values)) assert.deepEqual(entry[key], value, key);
  });

  it('writes only entries at or above its level', async () => {
    const { logger, lines } = capturedLogger('warn');
    logger.debug('debug');
    logger.info('info');
    logger.warn('warn');
    logger.error('error');
    assert.deepEqual((await lines()).map((line) => (JSON.parse(line) as { message: string }).message), ['warn', 'error']);
  });

  it('does not even read an entry below its level (no redaction work for what is not written), and follows a level change', async () => {
    const { logger, lines } = capturedLogger('info');
    let reads = 0;
    const watched = () => ({
      detail: {
        get sourceRecordId() {
          reads++;
          return 'sr-1';
        },
      },
    });
    logger.debug('below the level', watched());
    assert.equal(reads, 0, 'the debug entry was looked at');
    logger.info('at the level', watched());
    assert.ok(reads > 0);
    logger.level = 'debug';
    logger.debug('now written');
    assert.deepEqual((await lines()).map((line) => (JSON.parse(line) as { message: string }).message), ['at the level', 'now written']);
  });

  it('offers a silent logger for tests', () => {
    const logger = silentLogger();
    assert.equal(logger.silent, true);
    logger.error('nothing to see', { email: maria.email });
  });
});

describe('redact', () => {
  it('redacts PHI keys in any spelling and leaves the input untouched', () => {
    const input = {
      Name: 'Maria Gonzalez',
      given_name: 'Maria',
      FamilyName: 'Gonzalez',
      'home-phone': '617 555 0134',
      phoneNumber: 6175550134,
      EMAIL_ADDRESS: 'MARIA@EXAMPLE.COM',
      addressLine1: '12 Elm Street',
      postal_code: '01103',
      DateOfBirth: '1984-03-07',
      SSN: '123-45-6789',
      telecom: [{ value: '617-555-0134' }],
      missingEmail: null,
      id: 'p-1',
    };
    const snapshot = structuredClone(input);
    const out = redact(input) as Record<string, unknown>;
    assert.deepEqual(input, snapshot);
    for (const key of Object.keys(input)) {
      const expected = key === 'id' ? 'p-1' : key === 'missingEmail' ? null : '[redacted]';
      assert.equal(out[key], expected, key);
    }
  });

  it('scrubs strings, property names and dates, and survives cycles', () => {
    const cyclic: Record<string, unknown> = { note: 'call 617.555.0134', born: new Date('1984-03-07') };
    cyclic.self = cyclic;
    cyclic['maria.gonzalez@example.com'] = 3;
    assert.deepEqual(redact(cyclic), { note: 'call [phone]', born: '[date]', self: '[circular]', '[email]': 3 });
    assert.equal(redact('+44 20 7946 0958 or +442079460958'), '[phone] or [phone]');
    assert.equal(redact(Buffer.from('PID|||Gonzalez^Maria')), '[20 bytes]');
  });
});
