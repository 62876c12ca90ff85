/**
 * `settle listen`: the MLLP listeners alone (the docker-compose `listener` service), over real TCP.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT, runCli, waitFor } from '../support/cli.ts';
import { freePort, sendMllp } from '../support/mllp.ts';

/** The shipped data files with the HL7 listener of connectors/pm-hl7v2.json moved to `port`. */
function configWithPort(port: number): string {
  const configDir = mkdtempSync(join(tmpdir(), 'settle-listen-config-'));
  for (const folder of ['connectors', 'mappings', 'policies', 'fhir-profiles']) cpSync(join(ROOT, folder), join(configDir, folder), { recursive: true });
  const file = join(configDir, 'connectors', 'pm-hl7v2.json');
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), listen: { host: '127.0.0.1', port } }));
  return configDir;
}

const KEYS = {
  SETTLE_PAY_LINK_KEYS: `1:${Buffer.alloc(32, 9).toString('base64url')}`,
  SETTLE_ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 1).toString('base64')}`,
  SETTLE_BLIND_INDEX_KEY: Buffer.alloc(32, 2).toString('base64'),
};

/** Runs `settle listen` against a database until the test ends. */
async function listenAndStore(t: { after: (fn: () => unknown) => void }, env: Record<string, string | undefined>) {
  const port = await freePort();
  const configDir = configWithPort(port);
  const fullEnv = { ...env, SETTLE_CONFIG_DIR: configDir, SETTLE_LOG_LEVEL: 'warn', SETTLE_DEMO: 'off' };
  // --host names the interface instead of the connector's listen.host (the container binds 0.0.0.0).
  const child = spawn(process.execPath, ['bin/settle.js', 'listen', '--host', '127.0.0.1'], { cwd: ROOT, env: { ...process.env, ...fullEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  t.after(() => child.kill('SIGKILL'));
  await waitFor(async () => output.includes('Settle listening for HL7 v2'), 60_000, 'settle listen to listen', () => output);
  assert.match(output, new RegExp(`Settle listening for HL7 v2 \\(pm-hl7v2\\) on 127\\.0\\.0\\.1:${port}\\n`));
  assert.doesNotMatch(output, /listening on http/, 'no API in a listen process');

  const ack = await sendMllp(port, ['MSH|^~\\&|PMS|RIVERSIDE|SETTLE|SETTLE|20260601120000||DFT^P03|LISTEN-1|P|2.5.1', 'EVN|P03|20260601120000', 'PID|1||MRN123||DOE^JANE||19800101|F||||||||||ACCT-9', 'FT1|1|||20260530||CG|99213^Office visit|||1|150.00&USD'].join('\r'));
  assert.deepEqual([ack.code, ack.controlId], ['AA', 'LISTEN-1']);
  // Committed before its AA, and left for a worker to process (a listen process runs no jobs).
  const listed = await runCli(['hl7', 'messages', '--control-id', 'LISTEN-1', '--json'], fullEnv);
  assert.equal(listed.code, 0, listed.stderr);
  const { items } = JSON.parse(listed.stdout) as { items: Array<{ connector: string; messageType: string; status: string }> };
  assert.deepEqual(items.map((m) => [m.connector, m.messageType, m.status]), [['pm-hl7v2', 'DFT^P03', 'received']]);

  child.kill('SIGTERM');
  assert.equal(await exited, 0, output);
}

describe('settle listen', () => {
  it('listens on the embedded database, acknowledges a message once stored, and stops on SIGTERM', async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'settle-listen-'));
    await listenAndStore(t, { DATABASE_URL: undefined, SETTLE_ENCRYPTION_KEYS: undefined, SETTLE_BLIND_INDEX_KEY: undefined, SETTLE_PAY_LINK_KEYS: undefined, SETTLE_DATA_DIR: dataDir });
  });

  it('listens on a PostgreSQL server the same way', { skip: process.env.TEST_DATABASE_URL ? undefined : 'TEST_DATABASE_URL is not set: needs a PostgreSQL server' }, async (t) => {
    const { default: pg } = await import('pg');
    const admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    await admin.connect();
    const name = `settle_listen_${process.pid}_${Date.now()}`;
    await admin.query(`CREATE DATABASE ${name}`);
    t.after(async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    });
    const url = new URL(process.env.TEST_DATABASE_URL!);
    url.pathname = `/${name}`;
    await listenAndStore(t, { ...KEYS, DATABASE_URL: url.toString(), SETTLE_DATA_DIR: mkdtempSync(join(tmpdir(), 'settle-listen-')) });
  });

  it('refuses to start without an hl7v2-mllp connector (exit 3, naming the folder)', async () => {
    const configDir = mkdtempSync(join(tmpdir(), 'settle-listen-config-'));
    for (const folder of ['mappings', 'policies', 'fhir-profiles']) cpSync(join(ROOT, folder), join(configDir, folder), { recursive: true });
    mkdirSync(join(configDir, 'connectors'));
    cpSync(join(ROOT, 'connectors', 'connector.schema.json'), join(configDir, 'connectors', 'connector.schema.json'));
    const result = await runCli(['listen'], { DATABASE_URL: undefined, SETTLE_CONFIG_DIR: configDir, SETTLE_DATA_DIR: mkdtempSync(join(tmpdir(), 'settle-listen-')) });
    assert.equal(result.code, 3, result.stderr);
    assert.match(result.stderr, /connectors.*has no hl7v2-mllp connector: settle listen has nothing to listen for/);
  });
});
