/**
 * MLLP round trips: messages/s with the AA sent only after the durable commit, on 1 and 8 connections, side by
 * side with @medplum/hl7's Hl7Server answering without storing anything. The database is the PostgreSQL server
 * (BENCH_DATABASE_URL, else TEST_DATABASE_URL), or embedded PGlite when neither is set. Each line also says how
 * many messages shared a commit, how long a commit took, and what share of the run some commit was under way (the
 * rest is the listener, its senders and the loopback: what a faster database cannot win back); the line just
 * before the one-connection result measures what one durable commit of one row costs on this database, which
 * bounds one connection (a sender that waits for each ACK pays one commit per message). After the 8-connection
 * line, the same listener with a store that answers every insert at once (nothing stored, never used outside this
 * benchmark) shows what the listener's own work allows: the gap between the two is the commit.
 * Also: parse throughput of a ~1.8 KB DFT^P03 with 5 FT1 (decode by MSH-18 + parse + exact FT1-11 amounts)
 * against plain Hl7Message.parse; conversion of that message into its 5 source records; and the MLLP sender's
 * send-and-wait rate to Hl7Server against @medplum/hl7's own Hl7Client.sendAndWait.
 */
import net from 'node:net';
import { once } from 'node:events';
import { Hl7Message } from '@medplum/core';
import { Hl7Client, Hl7Server, type Hl7MessageEvent } from '@medplum/hl7';
import type pg from 'pg';
import { silentLogger } from '../src/config/logger.ts';
import { systemClock } from '../src/domain/clock.ts';
import { decodeHl7Bytes, parseMoneyField } from '../src/connectors/hl7v2/hl7-text.ts';
import { encodeFrame, MllpFramer } from '../src/connectors/hl7v2/mllp-framer.ts';
import { MllpSender } from '../src/connectors/hl7v2/mllp-sender.ts';
import { startMllpListener, type Hl7v2MllpConnector } from '../src/connectors/hl7v2/mllp-server.ts';
import { toSourceRecords } from '../src/connectors/hl7v2/to-source-records.ts';
import type { Queryable } from '../src/store/database.ts';
import { PracticeRepository } from '../src/store/practices.ts';
import { createTestDatabase } from '../tests/support/databases.ts';

const PER_CONNECTION = Number(process.env.BENCH_MLLP_MESSAGES ?? 1000);

function dft(controlId: string, ft1s = 1): string {
  const segments = [
    `MSH|^~\\&|PMS|RIVERSIDE|SETTLE|SETTLE|20260301103000||DFT^P03^DFT_P03|${controlId}|P|2.5.1`,
    'EVN|P03|20260301103000',
    'PID|1||MRN12345^^^RIVERSIDE^MR||Doe^Jane^^^^^L||19800101|F|||100 Main St^^Springfield^IL^62701^USA||(217)555-0100|||||ACCT9001^^^RIVERSIDE^AN',
    'PV1|1|O|CLINIC^^^RIVERSIDE||||1234^Smith^John^^^^MD',
  ];
  for (let i = 1; i <= ft1s; i++) {
    segments.push(
      `FT1|${i}|TX${i}||20260228|20260301|CG|99213^Office or other outpatient visit, established patient^CPT|Office visit|Office visit|1|150.00&USD|150.00&USD|||||||||||||1234^Smith^John^^^^MD|||||99213^Office visit^CPT|25^Modifier^CPT`,
    );
  }
  segments.push('GT1|1||Doe^Jane^^^^^L||100 Main St^^Springfield^IL^62701^USA|(217)555-0100||19800101|F||SEL');
  segments.push('IN1|1|PPO^Preferred Plan|12345|Acme Health Insurance|PO Box 1^^Springfield^IL^62701||(800)555-0199|GRP001');
  return segments.join('\r');
}

/** Sends `count` messages on one connection, one at a time, each waiting for its ACK. */
async function roundTrips(port: number, count: number, prefix: string): Promise<void> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await once(socket, 'connect');
  const framer = new MllpFramer({ maxMessageBytes: 1 << 20 });
  let waiting: (() => void) | undefined;
  socket.on('data', (chunk) => {
    if (framer.push(chunk).length > 0) waiting?.();
  });
  for (let i = 0; i < count; i++) {
    const acked = new Promise<void>((resolve) => (waiting = resolve));
    socket.write(encodeFrame(dft(`${prefix}-${i}`)));
    await acked;
  }
  socket.destroy();
}

async function rate(port: number, connections: number, tag: string): Promise<number> {
  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, (_, c) => roundTrips(port, PER_CONNECTION, `${tag}-${c}`)));
  return (connections * PER_CONNECTION) / ((performance.now() - started) / 1000);
}

const serverUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL;
if (serverUrl) process.env.TEST_DATABASE_URL = serverUrl;
const engine = serverUrl ? 'postgres' : 'pglite';
const handle = await createTestDatabase(engine, 10);
const practice = await new PracticeRepository(handle.db.pool).ensure({ slug: 'bench', name: 'Bench' });
const listenerConnector: Hl7v2MllpConnector = {
  name: 'bench-mllp',
  transport: 'hl7v2-mllp',
  listen: { host: '127.0.0.1', port: 0 },
  acceptedMessageTypes: ['DFT^P03'],
  charset: 'UTF-8',
  retentionDays: 30,
};
const listener = await startMllpListener({ db: handle.db, practiceId: practice.id, connector: listenerConnector, logger: silentLogger(), clock: systemClock });
const peer = new Hl7Server((connection) => {
  connection.addEventListener('message', (event: Hl7MessageEvent) => connection.send(event.message.buildAck()));
});
await peer.start(0);
const peerPort = (peer.server?.address() as net.AddressInfo).port;

const where = engine === 'postgres' ? 'PostgreSQL server' : 'embedded PGlite';

/**
 * The floor under one connection: a single-row INSERT committed on its own, back to back, on one connection.
 * @returns the mean commit latency in ms (printed with its median and p90).
 */
async function commitLatency(): Promise<number> {
  const db = await handle.db.pool.connect();
  await db.query('CREATE TABLE IF NOT EXISTS bench_commit (id bigserial PRIMARY KEY, note text NOT NULL)');
  const latencies: number[] = [];
  for (let i = 0; i < 1200; i++) {
    const started = performance.now();
    await db.query('INSERT INTO bench_commit (note) VALUES ($1)', [`commit ${i}`]);
    if (i >= 200) latencies.push(performance.now() - started);
  }
  db.release();
  latencies.sort((a, b) => a - b);
  const mean = latencies.reduce((sum, ms) => sum + ms, 0) / latencies.length;
  console.log(
    `durable commit of one single-row INSERT (${where}, one connection, back to back): mean ${mean.toFixed(3)} ms (median ${latencies[latencies.length >> 1].toFixed(3)}, p90 ${latencies[Math.floor(latencies.length * 0.9)].toFixed(3)}), so at most ${(1000 / mean).toFixed(0)} commits/s on one connection`,
  );
  return mean;
}

for (const connections of [1, 8]) {
  await rate(listener.port, connections, `warm${connections}`); // warm-up (and JIT) on both sides
  await rate(peerPort, connections, `warm${connections}`);
  // Measured just before the one-connection run, under the same load, so the bound sits next to the result.
  const commitMs = connections === 1 ? await commitLatency() : 0;
  const before = listener.commitStats();
  const ours = await rate(listener.port, connections, `run${connections}`);
  const after = listener.commitStats();
  const theirs = await rate(peerPort, connections, `run${connections}`);
  const batches = after.batches - before.batches;
  const perCommit = (after.messages - before.messages) / batches;
  // Where the time went: the database (some batch committing) or the rest (listener, senders, loopback).
  const committing = after.committingMs - before.committingMs;
  const spent = `; a commit ${(committing / batches).toFixed(2)} ms, some commit under way ${((committing / 1000) * ours / (after.messages - before.messages) * 100).toFixed(0)} % of the time`;
  // A sender waiting for each ACK pays one commit per message: one connection cannot beat 1 / commit latency.
  const bound = connections === 1 ? `; bound: at most ${(1000 / commitMs).toFixed(0)} msg/s at ${commitMs.toFixed(3)} ms a commit, 0.5x needs ${(theirs / 2).toFixed(0)}` : '';
  console.log(
    `mllp round trip, AA after durable commit (${where}, ${connections} connection${connections > 1 ? 's' : ''}): ${ours.toFixed(0)} msg/s (${(ours / theirs).toFixed(2)}x vs @medplum/hl7 Hl7Server storing nothing at ${theirs.toFixed(0)} msg/s; ${perCommit.toFixed(1)} messages per commit${spent}${bound})`,
  );
}
await listener.close();

// The listener's own ceiling: the same listener, each batch's insert answered at once (nothing is stored).
{
  const instant: Queryable = {
    query: async <R extends pg.QueryResultRow>() => ({ rows: [] as R[], rowCount: 0, command: 'INSERT', oid: 0, fields: [] }),
  };
  const alone = await startMllpListener({ db: instant, practiceId: practice.id, connector: { ...listenerConnector, name: 'bench-mllp-alone' }, logger: silentLogger(), clock: systemClock });
  await rate(alone.port, 8, 'alone-warm');
  const ours = await rate(alone.port, 8, 'alone');
  const theirs = await rate(peerPort, 8, 'alone');
  console.log(
    `mllp round trip, the listener alone (8 connections, each insert answered at once, nothing stored): ${ours.toFixed(0)} msg/s (${(ours / theirs).toFixed(2)}x vs @medplum/hl7 Hl7Server storing nothing at ${theirs.toFixed(0)} msg/s)`,
  );
  await alone.close();
}

// The write-back sender: one connection, send-and-wait, against @medplum/hl7's client doing the same.
{
  const sender = new MllpSender({ host: '127.0.0.1', port: peerPort, logger: silentLogger() });
  const client = new Hl7Client({ host: '127.0.0.1', port: peerPort });
  type TheirMessage = Parameters<Hl7Client['sendAndWait']>[0];
  const viaSender = async (n: number, tag: string) => {
    const started = performance.now();
    for (let i = 0; i < n; i++) {
      const outcome = await sender.send(dft(`${tag}-${i}`));
      if (outcome.status !== 'delivered') throw new Error(`sender: ${outcome.status}`);
    }
    return n / ((performance.now() - started) / 1000);
  };
  const viaClient = async (n: number, tag: string) => {
    const started = performance.now();
    for (let i = 0; i < n; i++) await client.sendAndWait(Hl7Message.parse(dft(`${tag}-${i}`)) as unknown as TheirMessage);
    return n / ((performance.now() - started) / 1000);
  };
  await viaSender(PER_CONNECTION, 'swarm');
  await viaClient(PER_CONNECTION, 'cwarm');
  const ours = await viaSender(PER_CONNECTION, 'srun');
  const theirs = await viaClient(PER_CONNECTION, 'crun');
  console.log(
    `mllp sender, send-and-wait on 1 connection to Hl7Server: ${ours.toFixed(0)} msg/s (${(ours / theirs).toFixed(2)}x vs @medplum/hl7 Hl7Client.sendAndWait at ${theirs.toFixed(0)} msg/s)`,
  );
  await sender.close();
  await client.close();
}
await peer.stop({ forceDrainTimeoutMs: 100 });
await handle.drop();

// Parse throughput.
const sample = Buffer.from(dft('PARSE1', 5));
const ITER = 20_000;
let sink = 0;
for (let i = 0; i < 2000; i++) sink += Hl7Message.parse(sample.toString('utf8')).getAllSegments('FT1').length;
let t = performance.now();
for (let i = 0; i < ITER; i++) sink += Hl7Message.parse(sample.toString('utf8')).getAllSegments('FT1').length;
const plain = ITER / ((performance.now() - t) / 1000);
t = performance.now();
for (let i = 0; i < ITER; i++) {
  const message = Hl7Message.parse(decodeHl7Bytes(sample).text);
  for (const ft1 of message.getAllSegments('FT1')) sink += parseMoneyField(ft1.getField(11).toString()).minorUnits;
}
const ours = ITER / ((performance.now() - t) / 1000);
console.log(
  `hl7 parse, ${sample.length} B DFT^P03 with 5 FT1 (decode by MSH-18 + parse + exact FT1-11): ${ours.toFixed(0)} msg/s (${(ours / plain).toFixed(2)}x vs plain Hl7Message.parse at ${plain.toFixed(0)} msg/s)${sink < 0 ? '' : ''}`,
);

// Conversion into source records (parse, decode every value, 5 records with SHA-256 content hashes).
const stored = {
  id: '00000000-0000-4000-8000-000000000001',
  practiceId: '00000000-0000-4000-8000-000000000002',
  connector: 'bench',
  controlId: 'PARSE1',
  messageType: 'DFT^P03',
  sendingApplication: 'PMS',
  sendingFacility: 'RIVERSIDE',
  receivedAt: new Date(),
  raw: sample.toString('utf8'),
  rawBytesCharset: 'UTF-8' as const,
};
for (let i = 0; i < 2000; i++) sink += toSourceRecords(stored).records.length;
t = performance.now();
for (let i = 0; i < ITER; i++) sink += toSourceRecords(stored).records.length;
const converted = ITER / ((performance.now() - t) / 1000);
console.log(
  `hl7 → source records, ${sample.length} B DFT^P03 with 5 FT1 (5 records): ${converted.toFixed(0)} msg/s (${(converted / plain).toFixed(2)}x vs plain Hl7Message.parse at ${plain.toFixed(0)} msg/s)`,
);
process.exit(0);
