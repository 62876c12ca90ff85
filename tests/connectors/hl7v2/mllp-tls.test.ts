import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../../src/config/logger.ts';
import { readAck } from '../../../src/connectors/hl7v2/ack.ts';
import { encodeFrame, MllpFramer } from '../../../src/connectors/hl7v2/mllp-framer.ts';
import { MllpSender } from '../../../src/connectors/hl7v2/mllp-sender.ts';
import { startMllpListener, type Hl7v2MllpConnector } from '../../../src/connectors/hl7v2/mllp-server.ts';
import { ManualClock } from '../../../src/domain/clock.ts';
import type { Database } from '../../../src/store/database.ts';
import { Hl7MessageRepository } from '../../../src/store/hl7-messages.ts';
import { PracticeRepository } from '../../../src/store/practices.ts';
import { createTestDatabase } from '../../support/databases.ts';

function opensslMissing(): string | undefined {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'openssl is not installed: TLS tests skipped';
  }
}

const dft = (controlId: string) =>
  [`MSH|^~\\&|PMS|RIVERSIDE|SETTLE|SETTLE|20260301103000||DFT^P03|${controlId}|P|2.5.1`, 'PID|1||MRN1||Doe^Jane|||||||||||||ACCT1', 'FT1|1|TX1||20260301||CG|99213|||1|10.00&USD'].join('\r');

const base: Hl7v2MllpConnector = {
  name: 'tls-feed',
  transport: 'hl7v2-mllp',
  listen: { host: '127.0.0.1', port: 0 },
  acceptedMessageTypes: ['DFT^P03'],
  charset: 'UTF-8',
  retentionDays: 30,
};

describe('MLLP listener: TLS and connection limit', () => {
  let handle: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Database;
  let practiceId: string;
  let dir: string;
  const clock = new ManualClock(new Date('2026-03-01T15:00:00Z'));

  before(async () => {
    handle = await createTestDatabase('pglite');
    db = handle.db;
    practiceId = (await new PracticeRepository(db.pool).ensure({ slug: 'tls', name: 'TLS' })).id;
    dir = mkdtempSync(join(tmpdir(), 'settle-tls-'));
  });
  after(async () => {
    await handle.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('over TLS', { skip: opensslMissing() }, () => {
    let cert: string;
    let key: string;
    before(() => {
      cert = join(dir, 'cert.pem');
      key = join(dir, 'key.pem');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    });

    it('accepts MLLP over TLS (our sender, trusting the certificate) and stores before the AA; plain TCP gets nothing', async () => {
      const listener = await startMllpListener({ db, practiceId, connector: { ...base, tls: { certFile: cert, keyFile: key } }, logger: silentLogger(), clock });
      const sender = new MllpSender({ host: '127.0.0.1', port: listener.port, logger: silentLogger(), tls: { ca: readFileSync(cert), servername: 'localhost' }, ackTimeoutMs: 3000 });
      try {
        const outcome = await sender.send(dft('TLS-1'));
        assert.equal(outcome.status, 'delivered');
        assert.equal((await new Hl7MessageRepository(db.pool).findByControlId(practiceId, 'tls-feed', 'TLS-1')).length, 1);

        // Plain MLLP to a TLS port: the handshake fails, the connection closes, nothing is stored or acknowledged.
        const plain = net.connect({ host: '127.0.0.1', port: listener.port });
        let answer = '';
        plain.on('data', (d) => (answer += d.toString('latin1')));
        plain.on('error', () => {});
        plain.write(encodeFrame(dft('PLAIN-1')));
        await new Promise((resolve) => plain.once('close', resolve));
        assert.doesNotMatch(answer, /MSA/);
        assert.equal((await new Hl7MessageRepository(db.pool).findByControlId(practiceId, 'tls-feed', 'PLAIN-1')).length, 0);
      } finally {
        await sender.close();
        await listener.close();
      }
    });

    it('with caFile, requires a client certificate signed by that CA', async () => {
      const listener = await startMllpListener({ db, practiceId, connector: { ...base, tls: { certFile: cert, keyFile: key, caFile: cert } }, logger: silentLogger(), clock });
      const withCert = new MllpSender({ host: '127.0.0.1', port: listener.port, logger: silentLogger(), tls: { ca: readFileSync(cert), cert: readFileSync(cert), key: readFileSync(key), servername: 'localhost' }, ackTimeoutMs: 3000 });
      const without = new MllpSender({ host: '127.0.0.1', port: listener.port, logger: silentLogger(), tls: { ca: readFileSync(cert), servername: 'localhost' }, ackTimeoutMs: 500, backoff: { initialMs: 1000 } });
      try {
        assert.equal((await withCert.send(dft('MTLS-1'))).status, 'delivered');
        const refused = await without.send(dft('MTLS-2'));
        assert.notEqual(refused.status, 'delivered');
        assert.equal((await new Hl7MessageRepository(db.pool).findByControlId(practiceId, 'tls-feed', 'MTLS-2')).length, 0);
      } finally {
        await withCert.close();
        await without.close();
        await listener.close();
      }
    });

    it('refuses to start with a missing or unusable certificate, naming the file', async () => {
      await assert.rejects(
        startMllpListener({ db, practiceId, connector: { ...base, tls: { certFile: join(dir, 'nope.pem'), keyFile: key } }, logger: silentLogger(), clock }),
        /cannot read the TLS certificate .*nope\.pem: ENOENT/,
      );
      await assert.rejects(
        startMllpListener({ db, practiceId, connector: { ...base, tls: { certFile: key, keyFile: cert } }, logger: silentLogger(), clock }),
        /TLS certificate and key cannot be used/,
      );
    });
  });

  it('closes connections beyond maxConnections before reading anything; the others keep working', async () => {
    const listener = await startMllpListener({ db, practiceId, connector: base, logger: silentLogger(), clock, maxConnections: 2 });
    const open = async () => {
      const socket = net.connect({ host: '127.0.0.1', port: listener.port });
      socket.on('error', () => {});
      await new Promise((resolve) => socket.once('connect', resolve));
      return socket;
    };
    const ask = (socket: net.Socket, controlId: string) =>
      new Promise<string>((resolve) => {
        const framer = new MllpFramer({ maxMessageBytes: 1 << 20 });
        const onData = (chunk: Buffer) => {
          for (const frame of framer.push(chunk)) {
            if (frame.kind === 'message') {
              socket.off('data', onData);
              resolve(readAck(frame.payload.toString('utf8')).code);
            }
          }
        };
        socket.on('data', onData);
        socket.write(encodeFrame(dft(controlId)));
      });
    const a = await open();
    const b = await open();
    await sleep(50);
    const c = await open();
    const closed = await Promise.race([new Promise((resolve) => c.once('close', () => resolve(true))), sleep(2000).then(() => false)]);
    assert.equal(closed, true, 'the third connection is closed');
    assert.equal(await ask(a, 'MAX-1'), 'AA');
    assert.equal(await ask(b, 'MAX-2'), 'AA');
    a.destroy();
    await sleep(50);
    const d = await open();
    assert.equal(await ask(d, 'MAX-3'), 'AA', 'a freed slot is usable again');
    b.destroy();
    d.destroy();
    await listener.close();
  });
});

