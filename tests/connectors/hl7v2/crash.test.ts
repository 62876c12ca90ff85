/**
 * Crash test: `settle start` as a real child process, a burst of DFT^P03 over several MLLP connections,
 * `kill -9` in the middle, then restart and re-send everything that did not get an AA.
 *
 * Checked straight after the kill (before anything is re-sent): every message that got an AA is in the
 * database. Checked at the end: every message is stored exactly once, with the text that was sent.
 *
 * On the PostgreSQL server (TEST_DATABASE_URL) the burst is 5,000 messages; on the embedded PGlite database
 * (one process, serialised) 1,000, so the test stays under a minute.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeFrame, MllpFramer } from '../../../src/connectors/hl7v2/mllp-framer.ts';
import { openDatabase, type Database } from '../../../src/store/database.ts';
import { spawnEngine, waitFor, type EngineProcess } from '../../support/cli.ts';
import { createTestDatabase } from '../../support/databases.ts';
import { freePort } from '../../support/mllp.ts';

const onServer = Boolean(process.env.TEST_DATABASE_URL);
const TOTAL = onServer ? 5000 : 1000;
const CONNECTIONS = 4;
/** Messages written ahead of their ACKs on one connection. */
const WINDOW = 25;
/** Kill once this many AAs have come back. */
const KILL_AFTER = Math.floor(TOTAL * 0.4);

function dft(i: number): { controlId: string; text: string } {
  const controlId = `CRASH-${String(i).padStart(5, '0')}`;
  const text = [
    `MSH|^~\\&|PMS|RIVERSIDE|SETTLE|SETTLE|20260301103000||DFT^P03^DFT_P03|${controlId}|P|2.5.1`,
    'EVN|P03|20260301103000',
    `PID|1||MRN${i}^^^RIVERSIDE^MR||Doe^Jane||19800101|F||||||||||ACCT${i}^^^RIVERSIDE^AN`,
    `FT1|1|TX${i}||20260228|20260301|CG|99213^Office visit^CPT|||1|${(i % 500) + 1}.25&USD`,
  ].join('\r');
  return { controlId, text };
}

async function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Sends `messages` over one connection, up to WINDOW ahead of their ACKs, recording each AA in `acked`.
 * Ends when every message is answered or the connection breaks.
 */
function sendOver(port: number, messages: Array<{ controlId: string; text: string }>, acked: Set<string>, onAck: () => void): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    const framer = new MllpFramer({ maxMessageBytes: 1 << 20 });
    let next = 0;
    let answered = 0;
    const pump = () => {
      while (next < messages.length && next - answered < WINDOW) socket.write(encodeFrame(messages[next++].text));
    };
    socket.on('connect', pump);
    socket.on('data', (chunk) => {
      for (const frame of framer.push(chunk)) {
        if (frame.kind !== 'message') continue;
        answered++;
        const text = frame.payload.toString('utf8');
        const msa = /(?:^|\r)MSA\|([A-Z]{2})\|([^|\r]*)/.exec(text);
        if (msa && msa[1] === 'AA') {
          acked.add(msa[2]);
          onAck();
        }
      }
      if (answered === messages.length) socket.end();
      else pump();
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve());
  });
}

async function burst(port: number, messages: Array<{ controlId: string; text: string }>, acked: Set<string>, onAck: () => void = () => {}): Promise<void> {
  const shares = Array.from({ length: CONNECTIONS }, (_, c) => messages.filter((_, i) => i % CONNECTIONS === c));
  await Promise.all(shares.map((share) => sendOver(port, share, acked, onAck)));
}

async function stored(db: Database): Promise<Map<string, { count: number; raw: string }>> {
  const { rows } = await db.pool.query<{ control_id: string; n: number; raw: string }>(
    "SELECT control_id, count(*)::int AS n, min(raw) AS raw FROM hl7_messages WHERE connector = 'crash-feed' GROUP BY control_id",
  );
  return new Map(rows.map((r) => [r.control_id, { count: r.n, raw: r.raw }]));
}

describe(`crash: kill -9 in the middle of a ${TOTAL}-message burst (${onServer ? 'PostgreSQL server' : 'embedded PGlite'})`, () => {
  const dirs: string[] = [];
  let engine: EngineProcess | undefined;
  let serverDb: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
  after(async () => {
    if (engine && engine.child.exitCode === null) {
      engine.child.kill('SIGKILL');
      await engine.exited;
    }
    await serverDb?.drop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('acknowledges only what is stored, and stores every message exactly once after re-sending', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const configDir = mkdtempSync(join(tmpdir(), 'settle-crash-cfg-'));
    const dataDir = mkdtempSync(join(tmpdir(), 'settle-crash-data-'));
    dirs.push(configDir, dataDir);
    mkdirSync(join(configDir, 'connectors'));
    writeFileSync(
      join(configDir, 'connectors', 'crash-feed.json'),
      JSON.stringify({
        name: 'crash-feed',
        description: 'crash test feed',
        practice: 'default',
        transport: 'hl7v2-mllp',
        listen: { host: '127.0.0.1', port },
        acceptedMessageTypes: ['DFT^P03'],
        charset: 'UTF-8',
        retentionDays: 30,
      }),
    );
    const env: Record<string, string | undefined> = {
      SETTLE_CONFIG_DIR: configDir,
      SETTLE_DATA_DIR: dataDir,
      SETTLE_LOG_LEVEL: 'warn',
      DATABASE_URL: undefined,
      SETTLE_ENCRYPTION_KEYS: undefined,
      SETTLE_BLIND_INDEX_KEY: undefined,
    };
    if (onServer) {
      serverDb = await createTestDatabase('postgres', 2);
      env.DATABASE_URL = serverDb.url;
      env.SETTLE_ENCRYPTION_KEYS = `k1:${Buffer.alloc(32, 1).toString('base64')}`;
      env.SETTLE_PAY_LINK_KEYS = `1:${Buffer.alloc(32, 3).toString('base64url')}`;
      env.SETTLE_BLIND_INDEX_KEY = Buffer.alloc(32, 2).toString('base64');
    }
    const openDb = async () => (onServer ? serverDb!.db : openDatabase({ dataDir, poolSize: 2 }));
    const closeDb = async (db: Database) => {
      if (!onServer) await db.close();
    };

    const messages = Array.from({ length: TOTAL }, (_, i) => dft(i));
    const started = performance.now();

    // 1. Engine up, burst, kill -9 once KILL_AFTER AAs are back.
    engine = spawnEngine('start', env);
    await engine.url;
    await waitFor(() => canConnect(port), 30_000, 'the MLLP listener');
    const ackedBeforeKill = new Set<string>();
    let killedAt = 0;
    const first = engine;
    await burst(port, messages, ackedBeforeKill, () => {
      if (!killedAt && ackedBeforeKill.size >= KILL_AFTER) {
        killedAt = ackedBeforeKill.size;
        first.child.kill('SIGKILL');
      }
    });
    assert.equal(await first.exited, null, 'killed by a signal');
    assert.ok(killedAt > 0, 'the engine was killed mid-burst');
    const acked = new Set(ackedBeforeKill); // AAs that arrived after the kill signal was sent count too
    assert.ok(acked.size < TOTAL, `the kill came before the end (${acked.size} of ${TOTAL} acknowledged)`);

    // 2. Straight after the crash: no AA was ever sent for a message that is not stored.
    let db = await openDb();
    const afterCrash = await stored(db);
    await closeDb(db);
    const ackedNotStored = [...acked].filter((id) => !afterCrash.has(id));
    assert.deepEqual(ackedNotStored, [], 'every acknowledged message survived the crash');
    const storedNotAcked = [...afterCrash.keys()].filter((id) => !acked.has(id)).length;

    // 3. Restart, re-send every message that did not get an AA (some are stored already: their ACK was lost).
    engine = spawnEngine('start', env);
    await engine.url;
    await waitFor(() => canConnect(port), 30_000, 'the MLLP listener after restart');
    let missing = messages.filter((m) => !acked.has(m.controlId));
    const resent = missing.length;
    for (let round = 0; missing.length > 0 && round < 3; round++) {
      await burst(port, missing, acked);
      missing = messages.filter((m) => !acked.has(m.controlId));
    }
    assert.equal(missing.length, 0, 'every message acknowledged after the restart');
    engine.child.kill('SIGTERM');
    assert.equal(await engine.exited, 0, engine.output());

    // 4. From the database, with the engine stopped: each message exactly once, as sent.
    db = await openDb();
    const final = await stored(db);
    await closeDb(db);
    assert.equal(final.size, TOTAL);
    for (const m of messages) {
      const row = final.get(m.controlId);
      assert.ok(row, `${m.controlId} stored`);
      assert.equal(row.count, 1, `${m.controlId} stored once`);
      assert.equal(row.raw, m.text, `${m.controlId} stored as sent`);
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(
      `crash test (${onServer ? 'server' : 'embedded'}): ${TOTAL} messages, killed after ${killedAt} AAs (${ackedBeforeKill.size} AAs received in all), ` +
        `${afterCrash.size} stored at the crash (${storedNotAcked} stored whose AA was lost), ${resent} re-sent, all stored once, ${seconds} s`,
    );
    await sleep(0);
  });
});
