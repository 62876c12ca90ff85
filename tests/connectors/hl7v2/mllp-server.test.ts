import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { after, before, it } from 'node:test';
import { Hl7Message } from '@medplum/core';
import { Hl7Client } from '@medplum/hl7';
import { Client as NodeHl7Client, Message as NodeHl7Message } from 'node-hl7-client';
import { PassThrough } from 'node:stream';
import pg from 'pg';
import { createLogger, silentLogger } from '../../../src/config/logger.ts';
import { ManualClock } from '../../../src/domain/clock.ts';
import { readAck } from '../../../src/connectors/hl7v2/ack.ts';
import { parseMoneyField } from '../../../src/connectors/hl7v2/hl7-text.ts';
import { encodeFrame, MllpFramer } from '../../../src/connectors/hl7v2/mllp-framer.ts';
import { startMllpListener, type Hl7v2MllpConnector, type MllpListener } from '../../../src/connectors/hl7v2/mllp-server.ts';
import type { Queryable } from '../../../src/store/database.ts';
import { Hl7MessageRepository } from '../../../src/store/hl7-messages.ts';
import { PracticeRepository } from '../../../src/store/practices.ts';
import { describeOnEachDatabase } from '../../support/databases.ts';

const SAMPLES = fileURLToPath(new URL('../../../../shared/samples/hl7v2/', import.meta.url));
const samplesSkip = existsSync(SAMPLES) ? undefined : `HL7v2 samples not found at ${SAMPLES} (the shared folder beside the checkout): sample tests skipped`;

const connector: Hl7v2MllpConnector = {
  name: 'pm-hl7v2',
  transport: 'hl7v2-mllp',
  practice: 'riverside',
  listen: { host: '127.0.0.1', port: 0 },
  acceptedMessageTypes: ['DFT^P03', 'ADT^A04', 'ADT^A08', 'BAR^P01'],
  charset: 'UTF-8',
  retentionDays: 90,
};

/** A DFT^P03 written to the v2.5.1 definitions: a charge (CG) and a payment (PY) on account PID-18. */
function dft(controlId: string): string {
  return [
    `MSH|^~\\&|PMS|RIVERSIDE|SETTLE|SETTLE|20260301103000||DFT^P03^DFT_P03|${controlId}|P|2.5.1`,
    'EVN|P03|20260301103000',
    'PID|1||MRN12345^^^RIVERSIDE^MR||Doe^Jane^^^^^L||19800101|F||||||||||ACCT9001^^^RIVERSIDE^AN',
    'PV1|1|O|CLINIC^^^RIVERSIDE',
    'FT1|1|TX1001||20260228|20260301|CG|99213^Office visit^CPT|||1|150.00&USD|150.00&USD',
    'FT1|2|TX1002||20260301|20260301|PY|PAY^Patient payment^LOCAL|||1|-25.50&USD',
  ].join('\r');
}

/**
 * A message for @medplum/hl7's client, which bundles its own copy of @medplum/core: same shape, another class
 * declaration, so the types need a cast (the client only calls toString() and getSegment() on it).
 */
type PeerMessage = Parameters<Hl7Client['sendAndWait']>[0];
function peerMessage(text: string): PeerMessage {
  return Hl7Message.parse(text) as unknown as PeerMessage;
}

/** MSA-1 of an ACK parsed by a peer library (which may bundle another @medplum/core). */
function ackCode(ack: { getSegment(name: string): { getField(n: number): { toString(): string } } | undefined }): string {
  return ack.getSegment('MSA')?.getField(1).toString() ?? '';
}

/** A raw MLLP peer: writes bytes as told and collects the ACKs it gets back. */
class RawPeer {
  readonly socket: net.Socket;
  readonly acks: string[] = [];
  private readonly framer = new MllpFramer({ maxMessageBytes: 1 << 20 });
  private waiters: Array<() => void> = [];
  closed = false;
  private readonly onAck?: (ack: string) => void;
  constructor(port: number, onAck?: (ack: string) => void) {
    this.onAck = onAck;
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (chunk) => {
      for (const frame of this.framer.push(chunk)) {
        if (frame.kind !== 'message') continue;
        const text = frame.payload.toString('latin1');
        this.onAck?.(text);
        this.acks.push(text);
      }
      this.wake();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }
  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
  async connected(): Promise<void> {
    if (!this.socket.connecting) return;
    await once(this.socket, 'connect');
  }
  /** Waits until `count` ACKs have arrived (or the connection closed). */
  async waitForAcks(count: number, timeoutMs = 5000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.acks.length < count && !this.closed) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} ACKs (got ${this.acks.length})`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return this.acks.slice(0, count);
  }
  async waitForClose(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('connection not closed');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  end(): void {
    this.socket.destroy();
  }
}

describeOnEachDatabase('MLLP listener', (db, engine) => {
  const clock = new ManualClock(new Date('2026-03-01T15:30:00Z'));
  let practiceId = '';
  let listener: MllpListener;
  /** Commits seen by the listener's database, in order, interleaved with ACK arrivals recorded by tests. */
  const events: string[] = [];
  let repository: Hl7MessageRepository;
  const logLines: string[] = [];
  const logStream = new PassThrough();
  logStream.on('data', (chunk: Buffer) => logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));

  /** The pool, recording each committed insert of an hl7 message (by control id) when the insert returns. */
  function recordingPool(): Queryable {
    return {
      async query(text: string, values?: unknown[]) {
        const result = await db().pool.query(text, values);
        if (text.includes('INSERT INTO hl7_messages')) {
          for (const controlId of values?.[3] as string[]) events.push(`commit:${controlId}`); // $1 ids, $2 practices, $3 connectors, $4 control ids
        }
        return result;
      },
    } as Queryable;
  }

  async function rows(controlId: string) {
    return repository.findByControlId(practiceId, connector.name, controlId);
  }

  before(async () => {
    practiceId = (await new PracticeRepository(db().pool).ensure({ slug: 'riverside', name: 'Riverside Pediatrics' })).id;
    repository = new Hl7MessageRepository(db().pool);
    listener = await startMllpListener({
      db: recordingPool(),
      practiceId,
      connector,
      logger: createLogger({ level: 'debug', stream: logStream }),
      clock,
      maxMessageBytes: 16 * 1024,
      idleTimeoutMs: 3000,
    });
  });

  after(async () => {
    await listener.close();
  });

  it("stores a DFT^P03 from @medplum/hl7's Hl7Client before acknowledging it with AA", async () => {
    const client = new Hl7Client({ host: '127.0.0.1', port: listener.port });
    try {
      const ack = await client.sendAndWait(peerMessage(dft('DFT0001')), { timeoutMs: 5000 });
      // The row is there the moment the AA arrives.
      const stored = await rows('DFT0001');
      assert.equal(ackCode(ack), 'AA');
      assert.equal(ack.getSegment('MSA')?.getField(2).toString(), 'DFT0001');
      assert.equal(ack.header.getField(3).toString(), 'SETTLE');
      assert.equal(ack.header.getField(5).toString(), 'PMS', 'sender and receiver swapped');
      assert.equal(ack.header.getField(9).toString(), 'ACK^P03^ACK');
      assert.notEqual(ack.header.getField(10).toString(), 'DFT0001');
      assert.equal(stored.length, 1);
      assert.equal(stored[0].messageType, 'DFT^P03');
      assert.equal(stored[0].sendingApplication, 'PMS');
      assert.equal(stored[0].sendingFacility, 'RIVERSIDE');
      assert.equal(stored[0].status, 'received');
      assert.equal(stored[0].rawBytesCharset, 'UTF-8');
      assert.deepEqual(stored[0].receivedAt, clock.now());
      // What is stored is the message, exactly enough to read FT1-6, FT1-11 and PID-18 back.
      const message = Hl7Message.parse(stored[0].raw);
      const [charge, payment] = message.getAllSegments('FT1');
      assert.equal(charge.getField(6).toString(), 'CG');
      assert.deepEqual(parseMoneyField(charge.getField(11).toString()), { minorUnits: 15000, currency: 'USD' });
      assert.equal(payment.getField(6).toString(), 'PY');
      assert.deepEqual(parseMoneyField(payment.getField(11).toString()), { minorUnits: -2550, currency: 'USD' });
      assert.equal(message.getSegment('PID')?.getComponent(18, 1), 'ACCT9001');
    } finally {
      await client.close();
    }
  });

  it('sends AA only after the commit, in arrival order, for many messages pipelined in one write', async () => {
    events.length = 0;
    const peer = new RawPeer(listener.port, (ack) => events.push(`ack:${readAck(ack).controlId}`));
    await peer.connected();
    const ids = Array.from({ length: 40 }, (_, i) => `PIPE${String(i).padStart(3, '0')}`);
    peer.socket.write(Buffer.concat(ids.map((id) => encodeFrame(dft(id)))));
    const acks = await peer.waitForAcks(ids.length);
    assert.deepEqual(acks.map((a) => readAck(a).controlId), ids, 'ACKs in arrival order');
    assert.ok(acks.every((a) => readAck(a).code === 'AA'));
    for (const id of ids) {
      assert.ok(events.indexOf(`commit:${id}`) !== -1 && events.indexOf(`commit:${id}`) < events.indexOf(`ack:${id}`), `${id} committed before its AA`);
    }
    peer.end();
  });

  it('lets senders that each wait for their ACK share one commit, every AA still after its own commit', async () => {
    // Without gathering they split into two groups taking turns: about 4 of 8 senders per commit, 2 commits a round.
    events.length = 0;
    const gathering = await startMllpListener({ db: recordingPool(), practiceId, connector: { ...connector, name: 'pm-hl7v2-gather' }, logger: silentLogger(), clock, gatherMs: 500 });
    const rounds = 20;
    const peers = Array.from({ length: 8 }, () => new RawPeer(gathering.port, (ack) => events.push(`ack:${readAck(ack).controlId}`)));
    await Promise.all(peers.map((peer) => peer.connected()));
    await Promise.all(
      peers.map(async (peer, p) => {
        for (let i = 0; i < rounds; i++) {
          peer.socket.write(encodeFrame(dft(`GATHER-${p}-${i}`)));
          const [ack] = (await peer.waitForAcks(i + 1)).slice(i).map(readAck);
          assert.deepEqual([ack.code, ack.controlId], ['AA', `GATHER-${p}-${i}`]);
        }
        peer.end(); // gone: the last commit does not wait for it
      }),
    );
    const stats = gathering.commitStats();
    await gathering.close();
    assert.equal(stats.messages, 8 * rounds);
    // The first messages commit without waiting (nobody is expected yet); once every sender has been in a commit,
    // all eight share each one. How many commits that takes depends on how the first sends interleave (a loaded
    // machine spreads them out), so allow a few: without gathering it is about 2 x rounds.
    assert.ok(stats.batches <= rounds + 5, `${stats.batches} commits for ${stats.messages} messages from 8 senders`);
    for (let p = 0; p < 8; p++) {
      for (let i = 0; i < rounds; i++) {
        const id = `GATHER-${p}-${i}`;
        assert.ok(events.indexOf(`commit:${id}`) !== -1 && events.indexOf(`commit:${id}`) < events.indexOf(`ack:${id}`), `${id} committed before its AA`);
      }
    }
    const stored = await Promise.all(peers.map((_, p) => repository.findByControlId(practiceId, 'pm-hl7v2-gather', `GATHER-${p}-${rounds - 1}`)));
    assert.ok(stored.every((found) => found.length === 1));
  });

  it('decodes two messages in one write and end bytes split across writes', async () => {
    const peer = new RawPeer(listener.port);
    await peer.connected();
    peer.socket.write(Buffer.concat([encodeFrame(dft('TWO1')), encodeFrame(dft('TWO2'))]));
    await peer.waitForAcks(2);
    const split = encodeFrame(dft('SPLIT1'));
    peer.socket.write(split.subarray(0, 10));
    await new Promise((resolve) => setTimeout(resolve, 20));
    peer.socket.write(split.subarray(10, split.length - 1)); // ends with FS
    await new Promise((resolve) => setTimeout(resolve, 20));
    peer.socket.write(split.subarray(split.length - 1)); // CR alone
    const acks = await peer.waitForAcks(3);
    assert.deepEqual(acks.map((a) => [readAck(a).code, readAck(a).controlId]), [['AA', 'TWO1'], ['AA', 'TWO2'], ['AA', 'SPLIT1']]);
    assert.equal((await rows('TWO2')).length, 1);
    assert.equal((await rows('SPLIT1')).length, 1);
    peer.end();
  });

  it('acknowledges a re-sent control id again but stores it once', async () => {
    const peer = new RawPeer(listener.port);
    await peer.connected();
    peer.socket.write(encodeFrame(dft('DUP1')));
    await peer.waitForAcks(1);
    peer.socket.write(encodeFrame(dft('DUP1')));
    const acks = await peer.waitForAcks(2);
    assert.deepEqual(acks.map((a) => readAck(a).code), ['AA', 'AA']);
    assert.equal((await rows('DUP1')).length, 1);
    // The same control id from another sender is another message.
    peer.socket.write(encodeFrame(dft('DUP1').replace('|PMS|RIVERSIDE|', '|OTHERPMS|RIVERSIDE|')));
    await peer.waitForAcks(3);
    assert.equal((await rows('DUP1')).length, 2);
    peer.end();
  });

  it('rejects an unaccepted type with AR 200 and garbage with AR, storing neither', async () => {
    const peer = new RawPeer(listener.port);
    await peer.connected();
    peer.socket.write(encodeFrame(dft('ORU1').replace('DFT^P03^DFT_P03', 'ORU^R01^ORU_R01')));
    peer.socket.write(encodeFrame('this is not HL7 at all'));
    peer.socket.write(Buffer.from('unframed noise\r\n')); // discarded
    peer.socket.write(encodeFrame(Buffer.from([0xff, 0xfe, 0x00, 0x01])));
    peer.socket.write(encodeFrame(dft('AFTERGARBAGE')));
    const acks = (await peer.waitForAcks(4)).map(readAck);
    assert.equal(acks[0].code, 'AR');
    assert.equal(acks[0].controlId, 'ORU1');
    assert.equal(acks[0].errorCode, 200);
    assert.equal(acks[0].errorLocation, 'MSH^1^9');
    assert.equal(acks[1].code, 'AR');
    assert.equal(acks[1].errorCode, 100);
    assert.equal(acks[2].code, 'AR');
    assert.deepEqual([acks[3].code, acks[3].controlId], ['AA', 'AFTERGARBAGE']);
    assert.equal((await rows('ORU1')).length, 0);
    peer.end();
  });

  it('answers HL7 that is invalid (no MSH-10, no MSH-9) with AE and an ERR naming the field', async () => {
    const peer = new RawPeer(listener.port);
    await peer.connected();
    peer.socket.write(encodeFrame(dft('X').replace('|X|P|', '||P|')));
    peer.socket.write(encodeFrame(dft('NOTYPE').replace('DFT^P03^DFT_P03', '')));
    const acks = (await peer.waitForAcks(2)).map(readAck);
    assert.deepEqual(acks[0], { code: 'AE', controlId: '', errorCode: 101, errorLocation: 'MSH^1^10' });
    assert.deepEqual(acks[1], { code: 'AE', controlId: 'NOTYPE', errorCode: 101, errorLocation: 'MSH^1^9' });
    peer.end();
  });

  it('answers an oversize message with AR (echoing its MSH-10) and closes the connection', async () => {
    const peer = new RawPeer(listener.port);
    await peer.connected();
    const huge = `${dft('HUGE1')}\rNTE|1||${'x'.repeat(20 * 1024)}`;
    peer.socket.write(encodeFrame(huge));
    const [ack] = (await peer.waitForAcks(1)).map(readAck);
    assert.deepEqual([ack.code, ack.controlId, ack.errorCode], ['AR', 'HUGE1', 207]);
    await peer.waitForClose();
    assert.equal((await rows('HUGE1')).length, 0);
  });

  it('stores nothing from a connection reset mid-message, and keeps serving', async () => {
    const peer = new RawPeer(listener.port);
    await peer.connected();
    const frame = encodeFrame(dft('RESET1'));
    peer.socket.write(frame.subarray(0, frame.length - 30));
    await new Promise((resolve) => setTimeout(resolve, 30));
    peer.socket.resetAndDestroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal((await rows('RESET1')).length, 0);
    const next = new RawPeer(listener.port);
    await next.connected();
    next.socket.write(encodeFrame(dft('RESET2')));
    const [ack] = (await next.waitForAcks(1)).map(readAck);
    assert.deepEqual([ack.code, ack.controlId], ['AA', 'RESET2']);
    next.end();
  });

  it('stores a latin1 name sent as ISO-8859-1 bytes with MSH-18 8859/1', async () => {
    const client = new Hl7Client({ host: '127.0.0.1', port: listener.port, encoding: 'latin1' });
    try {
      const text = [
        'MSH|^~\\&|PMS|RIVERSIDE|SETTLE|SETTLE|20260301103000||ADT^A08^ADT_A01|LATIN1|P|2.5.1||||||8859/1',
        'EVN|A08|20260301103000',
        'PID|1||MRN777^^^RIVERSIDE^MR||Müller^Jürgen^^^^^L||19700101|M',
      ].join('\r');
      const ack = await client.sendAndWait(peerMessage(text), { timeoutMs: 5000 });
      assert.equal(ackCode(ack), 'AA');
      const [stored] = await rows('LATIN1');
      assert.equal(stored.rawBytesCharset, 'ISO-8859-1');
      assert.equal(Hl7Message.parse(stored.raw).getSegment('PID')?.getComponent(5, 1), 'Müller');
      assert.equal(Hl7Message.parse(stored.raw).getSegment('PID')?.getComponent(5, 2), 'Jürgen');
      assert.equal(ack.header.getField(18).toString(), '8859/1', 'the ACK says which charset it is in');
    } finally {
      await client.close();
    }
  });

  it('accepts the shared sample messages: ADT^A04 (one row for three copies of one control id), ADT^A01 rejected', { skip: samplesSkip }, async () => {
    const files = readdirSync(SAMPLES).filter((f) => f.endsWith('.hl7')).sort();
    assert.ok(files.length > 0);
    const client = new Hl7Client({ host: '127.0.0.1', port: listener.port });
    try {
      const outcomes: Record<string, string> = {};
      for (const file of files) {
        const message = Hl7Message.parse(readFileSync(`${SAMPLES}${file}`, 'utf8'));
        const ack = await client.sendAndWait(peerMessage(message.toString()), { timeoutMs: 5000 });
        const type = `${message.header.getComponent(9, 1)}^${message.header.getComponent(9, 2)}`;
        outcomes[file] = ackCode(ack) ?? '';
        assert.equal(ackCode(ack), connector.acceptedMessageTypes.includes(type) ? 'AA' : 'AR', file);
        if (ackCode(ack) === 'AA') {
          const stored = await rows(message.header.getField(10).toString());
          assert.equal(stored.length, 1, `${file}: stored once`);
          assert.equal(stored[0].messageType, type);
        }
      }
      assert.ok(Object.values(outcomes).includes('AA'));
      // The three ADT^A04 samples share EPIC/EPICADT control id 1817457: acknowledged each time, stored once.
      assert.equal((await rows('1817457')).length, 1);
      assert.equal((await rows('24553')).length, 0, 'ADT^A01 is not an accepted type');
    } finally {
      await client.close();
    }
  });

  it('accepts messages from node-hl7-client', async () => {
    const client = new NodeHl7Client({ host: '127.0.0.1', version: '2.5.1' });
    const acks: string[] = [];
    let resolveAck: () => void = () => {};
    const acked = new Promise<void>((resolve) => (resolveAck = resolve));
    const connection = client.createConnection({ port: listener.port, waitAck: true, version: '2.5.1' }, async (res) => {
      acks.push(res.getMessage().toString());
      resolveAck();
    });
    try {
      await connection.sendMessage(new NodeHl7Message({ text: dft('NODEHL7CLIENT1') }));
      await Promise.race([acked, new Promise((_, reject) => setTimeout(() => reject(new Error('no ACK')), 5000))]);
      const ack = readAck(acks[0]);
      assert.deepEqual([ack.code, ack.controlId], ['AA', 'NODEHL7CLIENT1']);
      assert.equal((await rows('NODEHL7CLIENT1')).length, 1);
    } finally {
      await connection.close();
      client.closeAll();
    }
  });

  it('still acknowledges a message whose sender half-closes right after sending it', async () => {
    const peer = new RawPeer(listener.port);
    await peer.connected();
    peer.socket.end(encodeFrame(dft('HALFCLOSE1')));
    const [ack] = (await peer.waitForAcks(1)).map(readAck);
    assert.deepEqual([ack.code, ack.controlId], ['AA', 'HALFCLOSE1']);
    await peer.waitForClose();
  });

  it('logs ids, never message content', async () => {
    const log = logLines.join('\n');
    assert.match(log, /"controlId":"DFT0001"/);
    assert.match(log, /"connector":"pm-hl7v2"/);
    assert.match(log, /"ack":"AR"/);
    for (const phi of ['Doe', 'Jane', 'MRN12345', 'ACCT9001', 'Müller', 'Jürgen', '19800101', 'Office visit', '150.00']) {
      assert.ok(!log.includes(phi), `log must not contain ${phi}`);
    }
  });

  it('closes an idle connection', async () => {
    const peer = new RawPeer(listener.port);
    await peer.connected();
    await peer.waitForClose(6000);
  });

  it('never sends AA when the database cannot commit: AR 207 instead', async () => {
    const failing = await startMllpListener({
      db: { query: async () => { throw new Error('database is down'); } } as unknown as Queryable,
      practiceId,
      connector: { ...connector, name: 'pm-hl7v2-down' },
      logger: silentLogger(),
      clock,
    });
    const peer = new RawPeer(failing.port);
    try {
      await peer.connected();
      peer.socket.write(encodeFrame(dft('DOWN1')));
      const [ack] = (await peer.waitForAcks(1)).map(readAck);
      assert.deepEqual([ack.code, ack.controlId, ack.errorCode], ['AR', 'DOWN1', 207]);
    } finally {
      peer.end();
      await failing.close();
    }
  });

  it('on a database, stores each message once through its pool; on a PostgreSQL server with statements prepared once per connection', async () => {
    const pool = new pg.Pool({ ...db().connection, max: 1 }); // one session, so its prepared statements can be listed
    const onDatabase = await startMllpListener({ db: { kind: db().kind, pool }, practiceId, connector: { ...connector, name: 'pm-hl7v2-pool' }, logger: silentLogger(), clock });
    try {
      const peer = new RawPeer(onDatabase.port);
      await peer.connected();
      for (const [i, id] of ['POOL1', 'POOL1', 'POOL2'].entries()) {
        peer.socket.write(encodeFrame(dft(id)));
        await peer.waitForAcks(i + 1);
      }
      assert.deepEqual(peer.acks.map((a) => [readAck(a).code, readAck(a).controlId]), [['AA', 'POOL1'], ['AA', 'POOL1'], ['AA', 'POOL2']]);
      peer.end();
      for (const id of ['POOL1', 'POOL2']) assert.equal((await repository.findByControlId(practiceId, 'pm-hl7v2-pool', id)).length, 1);
      if (engine === 'postgres') {
        const { rows } = await pool.query<{ name: string; statement: string }>("SELECT name, statement FROM pg_prepared_statements WHERE name LIKE 'settle_mllp_%' ORDER BY name");
        assert.deepEqual(rows.map((r) => [r.name, /^\s*(\w+)/.exec(r.statement)?.[1]]), [['settle_mllp_1', 'INSERT'], ['settle_mllp_2', 'INSERT'], ['settle_mllp_3', 'SELECT']], 'the insert, the insert of a batch holding a duplicate, and the lookup of the earlier row');
      }
    } finally {
      await onDatabase.close();
      await pool.end();
    }
  });

  it('close() waits for the message being committed, sends its AA, then closes', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let inserting: () => void = () => {};
    const started = new Promise<void>((resolve) => (inserting = resolve));
    const slow = await startMllpListener({
      db: {
        async query(text: string, values?: unknown[]) {
          if (text.includes('INSERT INTO hl7_messages')) {
            inserting();
            await gate;
          }
          return db().pool.query(text, values);
        },
      } as Queryable,
      practiceId,
      connector: { ...connector, name: 'pm-hl7v2-slow' },
      logger: silentLogger(),
      clock,
    });
    const peer = new RawPeer(slow.port);
    await peer.connected();
    peer.socket.write(encodeFrame(dft('SLOW1')));
    await started;
    const closed = slow.close();
    setTimeout(release, 50);
    await closed;
    const [ack] = (await peer.waitForAcks(1)).map(readAck);
    assert.deepEqual([ack.code, ack.controlId], ['AA', 'SLOW1']);
    assert.equal((await repository.findByControlId(practiceId, 'pm-hl7v2-slow', 'SLOW1')).length, 1);
    await peer.waitForClose();
    await assert.rejects(
      new Promise((resolve, reject) => net.connect(slow.port, '127.0.0.1').on('connect', resolve).on('error', reject)),
      /ECONNREFUSED/,
    );
  });
});
