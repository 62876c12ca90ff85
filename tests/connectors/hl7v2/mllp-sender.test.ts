import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Hl7Message } from '@medplum/core';
import { Hl7Server, type Hl7Connection, type Hl7MessageEvent } from '@medplum/hl7';
import { silentLogger } from '../../../src/config/logger.ts';
import { buildAck, Hl7ErrorCode } from '../../../src/connectors/hl7v2/ack.ts';
import { encodeFrame, MllpFramer } from '../../../src/connectors/hl7v2/mllp-framer.ts';
import { backoffDelay, MllpSender, outboundSender, parseAck } from '../../../src/connectors/hl7v2/mllp-sender.ts';

function dft(controlId: string, charset = ''): string {
  return [
    `MSH|^~\\&|SETTLE|SETTLE|PMS|RIVERSIDE|20260301103000||DFT^P03^DFT_P03|${controlId}|P|2.5.1${charset ? `||||||${charset}` : ''}`,
    'EVN|P03|20260301103000',
    'PID|1||MRN12345^^^RIVERSIDE^MR||Müller^Jürgen||19800101|M||||||||||ACCT9001',
    'FT1|1|PAY-1||20260301|20260301|PY|PAY^Payment^LOCAL||||-25.50&USD',
  ].join('\r');
}

/** Answers through @medplum/hl7's own connection (its own copy of Hl7Message: parse with its class). */
function reply(connection: Hl7Connection, received: { toString(): string; constructor: unknown }, text: string): void {
  const Their = received.constructor as { parse(text: string): unknown };
  connection.send(Their.parse(text) as Parameters<Hl7Connection['send']>[0]);
}

async function startPeer(onMessage: (connection: Hl7Connection, event: Hl7MessageEvent) => void, port = 0): Promise<{ server: Hl7Server; port: number; stop(): Promise<void> }> {
  const server = new Hl7Server((connection) => connection.addEventListener('message', (event: Hl7MessageEvent) => onMessage(connection, event)));
  await server.start(port);
  return { server, port: (server.server!.address() as net.AddressInfo).port, stop: () => server.stop({ forceDrainTimeoutMs: 1 }) };
}

/** A plain TCP peer: `onFrame` decides what happens to each message on each connection. */
async function startRawPeer(onFrame: (socket: net.Socket, payload: string, connectionNumber: number, bytes: Buffer) => void): Promise<{ port: number; close(): Promise<void> }> {
  let count = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const n = ++count;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const framer = new MllpFramer({ maxMessageBytes: 1 << 20 });
    socket.on('data', (chunk) => {
      for (const frame of framer.push(chunk)) if (frame.kind === 'message') onFrame(socket, frame.payload.toString('latin1'), n, frame.payload);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const senders: MllpSender[] = [];
function sender(port: number, options: Partial<ConstructorParameters<typeof MllpSender>[0]> = {}): MllpSender {
  const s = new MllpSender({ host: '127.0.0.1', port, logger: silentLogger(), ackTimeoutMs: 2000, backoff: { initialMs: 20, maxMs: 200 }, ...options });
  senders.push(s);
  return s;
}

describe('MLLP sender', () => {
  after(async () => {
    await Promise.all(senders.map((s) => s.close()));
  });

  it('delivers to @medplum/hl7 Hl7Server answering AA, one message outstanding at a time, on one connection', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const received: string[] = [];
    const peer = await startPeer((connection, event) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      received.push(event.message.getSegment('MSH')!.getField(10)!.toString());
      setTimeout(() => {
        inFlight--;
        connection.send(event.message.buildAck());
      }, 15);
    });
    try {
      const s = sender(peer.port);
      const outcomes = await Promise.all(['P1', 'P2', 'P3', 'P4'].map((id) => s.send(dft(id))));
      assert.deepEqual(outcomes.map((o) => [o.status, o.controlId]), [['delivered', 'P1'], ['delivered', 'P2'], ['delivered', 'P3'], ['delivered', 'P4']]);
      assert.deepEqual(received, ['P1', 'P2', 'P3', 'P4']);
      assert.equal(maxInFlight, 1, 'the next message waits for the ACK of the one before');
      assert.equal(s.connections, 1);
      const first = outcomes[0];
      assert.ok(first.status === 'delivered' && first.ackCode === 'AA' && /MSA\|AA\|P1/.test(first.ack));
      await s.close();
      assert.equal(s.state, 'closed');
      assert.equal((await s.send(dft('P6'))).status, 'unsent');
    } finally {
      await peer.stop();
    }
  });

  it('reports AE and AR as failed with the peer reason (MSA-3, ERR-3 text, ERR-8)', async () => {
    const peer = await startPeer((connection, event) => {
      const ours = Hl7Message.parse(event.message.toString());
      const controlId = ours.header.getField(10)!.toString();
      const ack = controlId === 'R1'
        ? buildAck({ code: 'AR', message: ours, now: new Date(), error: { code: Hl7ErrorCode.unsupportedMessageType, location: { segment: 'MSH', field: 9 }, text: 'DFT^P03 not accepted here' } })
        : buildAck({ code: 'AE', message: ours, now: new Date(), error: { code: Hl7ErrorCode.tableValueNotFound, location: { segment: 'PID', field: 18 }, text: 'unknown account ACCT9001' } })
            .replace(/MSA\|AE\|E1/, 'MSA|AE|E1|account \\T\\ guarantor mismatch');
      reply(connection, event.message, ack);
    });
    try {
      const s = sender(peer.port);
      const ae = await s.send(dft('E1'));
      assert.equal(ae.status, 'failed');
      assert.ok(ae.status === 'failed');
      assert.equal(ae.ackCode, 'AE');
      assert.equal(ae.errorCode, 103);
      assert.equal(ae.reason, 'account & guarantor mismatch; Table value not found; unknown account ACCT9001');
      const ar = await s.send(dft('R1'));
      assert.ok(ar.status === 'failed');
      assert.equal(ar.ackCode, 'AR');
      assert.equal(ar.errorCode, 200);
      assert.match(ar.reason, /DFT\^P03 not accepted here/);
      assert.equal(s.connections, 1, 'a refusal does not drop the connection');
    } finally {
      await peer.stop();
    }
  });

  it('reconnects with backoff after the peer goes away and comes back on the same port', async () => {
    const peer = await startPeer((connection, event) => connection.send(event.message.buildAck()));
    const port = peer.port;
    const s = sender(port);
    assert.equal((await s.send(dft('B1'))).status, 'delivered');
    await peer.stop();
    await sleep(50);
    // While the peer is down the message is never written: safe to send again.
    const down = await s.send(dft('B2'), { timeoutMs: 300 });
    assert.equal(down.status, 'unsent');
    assert.ok(down.status === 'unsent' && /not connected to 127\.0\.0\.1/.test(down.reason), down.reason);
    assert.ok(['backoff', 'connecting'].includes(s.state));
    const back = await startPeer((connection, event) => connection.send(event.message.buildAck()), port);
    try {
      const again = await s.send(dft('B2'), { timeoutMs: 3000 });
      assert.equal(again.status, 'delivered');
      assert.equal(s.connections, 2);
    } finally {
      await back.stop();
    }
  });

  it('a connection dropped after the message was written is unknown; the next send reconnects', async () => {
    const peer = await startRawPeer((socket, payload, n) => {
      const message = Hl7Message.parse(payload);
      if (n === 1) socket.destroy(); // took the message, then vanished: did it commit?
      else socket.write(encodeFrame(buildAck({ code: 'AA', message, now: new Date() })));
    });
    try {
      const s = sender(peer.port);
      const lost = await s.send(dft('D1'));
      assert.equal(lost.status, 'unknown');
      assert.ok(lost.status === 'unknown' && /closed before the ACK/.test(lost.reason));
      const next = await s.send(dft('D1'));
      assert.equal(next.status, 'delivered', 'the caller decided to send the same control id again');
      assert.equal(s.connections, 2);
    } finally {
      await peer.close();
    }
  });

  it('a peer that never answers: unknown at the timeout, and a late or foreign ACK is never taken for the next message', async () => {
    const payloads: string[] = [];
    let hold: net.Socket | undefined;
    const peer = await startRawPeer((socket, payload) => {
      payloads.push(payload);
      hold = socket;
    });
    try {
      const s = sender(peer.port);
      const started = performance.now();
      const silent = await s.send(dft('T1'), { timeoutMs: 250 });
      const took = performance.now() - started;
      assert.equal(silent.status, 'unknown');
      assert.ok(silent.status === 'unknown' && /no ACK within 250 ms/.test(silent.reason));
      assert.ok(took >= 240 && took < 1500, `took ${took} ms`);
      // The next message goes out; the peer now answers T1 (late), which must not count as T2's ACK.
      const pending = s.send(dft('T2'), { timeoutMs: 400 });
      await sleep(50);
      hold!.write(encodeFrame(buildAck({ code: 'AA', message: Hl7Message.parse(payloads[0]), now: new Date() })));
      assert.equal((await pending).status, 'unknown');
      assert.equal(payloads.length, 2, 'nothing re-sent by the sender itself');
    } finally {
      await peer.close();
    }
  });

  it('encodes by MSH-18: ISO-8859-1 declared, ISO-8859-1 bytes sent; UTF-8 otherwise', async () => {
    const seen: Buffer[] = [];
    const peer = await startRawPeer((socket, payload, _n, bytes) => {
      seen.push(bytes);
      socket.write(encodeFrame(buildAck({ code: 'AA', message: Hl7Message.parse(payload), now: new Date() })));
    });
    try {
      const s = sender(peer.port);
      assert.equal((await s.send(dft('L1', '8859/1'))).status, 'delivered');
      assert.equal((await s.send(dft('U1'))).status, 'delivered');
      assert.ok(seen[0].includes(Buffer.from('Müller', 'latin1')));
      assert.ok(seen[1].includes(Buffer.from('Müller', 'utf8')));
    } finally {
      await peer.close();
    }
  });

  it('refuses text that is not HL7 or has no MSH-10, before sending anything', () => {
    const s = sender(1);
    assert.throws(() => s.send('hello'), TypeError);
    assert.throws(() => s.send('MSH|^~\\&|A|B|C|D|2026||DFT^P03||P|2.5.1'), /MSH-10/);
    assert.equal(s.state, 'idle');
  });

  it("builds a connector's outbound sender from its outbound endpoint", async () => {
    const peer = await startPeer((connection, event) => connection.send(event.message.buildAck()));
    try {
      const connector = { name: 'pm-hl7v2', outbound: { host: '127.0.0.1', port: peer.port } };
      assert.equal(outboundSender({ name: 'none' }, silentLogger()), undefined);
      const s = outboundSender(connector, silentLogger(), { ackTimeoutMs: 2000 })!;
      senders.push(s);
      s.start();
      assert.equal((await s.send(dft('O1'))).status, 'delivered');
    } finally {
      await peer.stop();
    }
  });

  it('backoff doubles up to its cap, jittered between half and all of the delay', () => {
    const options = { initialMs: 100, maxMs: 1000 };
    assert.deepEqual([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, options, () => 0.999999)), [100, 200, 400, 800, 1000, 1000]);
    assert.deepEqual([0, 1, 2, 3, 4].map((a) => backoffDelay(a, options, () => 0)), [50, 100, 200, 400, 500]);
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(3, options);
      assert.ok(d >= 400 && d <= 800);
    }
  });

  it('parses ACKs: v2.3 style ERR-1 text, and no MSA is no ACK', () => {
    const ack = parseAck('MSH|^~\\&|PMS|R|SETTLE|S|2026||ACK^P03|A1|P|2.3\rMSA|AE|C9\rERR|FT1^1^11^102&Data type error');
    assert.deepEqual(ack, { code: 'AE', controlId: 'C9', reason: 'Data type error' });
    assert.equal(parseAck('MSH|^~\\&|PMS|R|SETTLE|S|2026||ACK^P03|A1|P|2.3'), undefined);
    assert.equal(parseAck('garbage'), undefined);
  });
});
