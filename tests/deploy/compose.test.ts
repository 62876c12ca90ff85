/**
 * Deployment files: docker-compose.yml, .env.example and the Dockerfile.
 *
 * The compose checks need docker-compose (v1, Debian's `docker-compose` package) or the
 * `docker compose` v2 plugin; `config` validates offline, no Docker engine needed. Without
 * either, those checks skip with a message. The .env.example and Dockerfile checks always run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SETTING_SPECS, SettingsError, loadSettings } from '../../src/config/settings.ts';

const root = resolve(import.meta.dirname, '../..');
const settleVariables = new Set(Object.keys(SETTING_SPECS));

/** Variables set (or shown commented out, `# NAME=`) in an env file, with their values. */
function envFileVariables(text: string): Map<string, { value: string; commented: boolean }> {
  const variables = new Map<string, { value: string; commented: boolean }>();
  for (const line of text.split('\n')) {
    const match = /^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (match) variables.set(match[2]!, { value: match[3]!, commented: match[1] !== undefined });
  }
  return variables;
}

const envExample = envFileVariables(readFileSync(join(root, '.env.example'), 'utf8'));

test('.env.example names only variables Settle reads (POSTGRES_* for the postgres container)', () => {
  const unknown = [...envExample.keys()].filter((name) => !settleVariables.has(name) && !name.startsWith('POSTGRES_'));
  assert.deepEqual(unknown, [], `not read by Settle (see SETTING_SPECS in src/config/settings.ts): ${unknown.join(', ')}`);
});

test('.env.example documents every variable Settle reads', () => {
  const missing = [...settleVariables].filter((name) => !envExample.has(name));
  assert.deepEqual(missing, [], `add to .env.example (set, or commented out as "# NAME=value"): ${missing.join(', ')}`);
});

test('.env.example values are valid except the key placeholders, which refuse to start', () => {
  const env: Record<string, string> = {};
  for (const [name, { value, commented }] of envExample) if (!commented && settleVariables.has(name)) env[name] = value;
  assert.throws(
    () => loadSettings(env),
    (error: unknown) => {
      assert.ok(error instanceof SettingsError);
      assert.deepEqual(error.problems.map((p) => p.variable).sort(), ['SETTLE_BLIND_INDEX_KEY', 'SETTLE_ENCRYPTION_KEYS', 'SETTLE_PAY_LINK_KEYS']);
      return true;
    },
  );
  // The same file with generated keys is a complete, valid configuration.
  const key = Buffer.alloc(32, 7).toString('base64');
  const settings = loadSettings({ ...env, SETTLE_ENCRYPTION_KEYS: `k1:${key}`, SETTLE_BLIND_INDEX_KEY: key, SETTLE_PAY_LINK_KEYS: `1:${Buffer.alloc(32, 8).toString('base64url')}` });
  assert.match(settings.databaseUrl ?? '', /@postgres:5432\//);
  const pg = (name: string) => envExample.get(name)?.value;
  const url = new URL(settings.databaseUrl!);
  assert.equal(decodeURIComponent(url.username), pg('POSTGRES_USER'), 'DATABASE_URL user matches POSTGRES_USER');
  assert.equal(decodeURIComponent(url.password), pg('POSTGRES_PASSWORD'), 'DATABASE_URL password matches POSTGRES_PASSWORD');
  assert.equal(url.pathname.slice(1), pg('POSTGRES_DB'), 'DATABASE_URL database matches POSTGRES_DB');
});

test('Dockerfile: copied paths exist, non-root, healthcheck, settle entrypoint', () => {
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
  assert.match(dockerfile, /^FROM node:24-bookworm-slim\b/m);
  for (const match of dockerfile.matchAll(/^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+\s*$/gm)) {
    for (const source of match[1]!.split(/\s+/)) assert.ok(existsSync(join(root, source)), `Dockerfile copies missing ${source}`);
  }
  assert.match(dockerfile, /^USER\s+(?!root\b|0\b)\S+/m, 'runs as a non-root user');
  assert.match(dockerfile, /^ENV\b[^]*?\bSETTLE_HOST=0\.0\.0\.0\b/m);
  assert.match(dockerfile, /^HEALTHCHECK\b[^]*?\/healthz/m);
  // The image runs Node with the flags `npm start` uses (the young-generation size that keeps a Bulk import's memory flat).
  const start = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start!;
  const flags = start.replace(/^node /, '').replace(/ src\/cli\/main\.ts start$/, '').split(' ');
  assert.deepEqual(flags, ['--max-semi-space-size=16']);
  assert.match(dockerfile, new RegExp(`^ENTRYPOINT \\["node", ${flags.map((f) => `"${f}", `).join('')}"src/cli/main\\.ts"\\]$`, 'm'));
  assert.match(readFileSync(join(root, 'bin/settle.js'), 'utf8'), new RegExp(`^#!/usr/bin/env -S node ${flags.join(' ')}\n`));
  assert.match(dockerfile, /^CMD \["start"\]$/m);
  const dockerignore = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
  for (const entry of ['node_modules', 'data', 'tests/artifacts', '.git', '.env']) assert.ok(dockerignore.includes(entry), `.dockerignore lists ${entry}`);
});

/** The compose command available here: docker-compose (v1) or the docker compose plugin (v2). */
function composeCommand(): string[] | undefined {
  for (const command of [['docker-compose'], ['docker', 'compose']]) {
    const probe = spawnSync(command[0]!, [...command.slice(1), 'version'], { encoding: 'utf8' });
    if (probe.status === 0) return command;
  }
  return undefined;
}

/** Top-level service blocks of `config` output (YAML indented by two spaces), by name. */
function serviceBlocks(yaml: string): Map<string, string> {
  const section = /^services:\n((?:[ ].*\n|\n)*)/m.exec(yaml.endsWith('\n') ? yaml : `${yaml}\n`);
  assert.ok(section, 'config output has a services: section');
  const blocks = new Map<string, string>();
  let name: string | undefined;
  for (const line of section[1]!.split('\n')) {
    const header = /^ {2}([A-Za-z0-9_.-]+):\s*$/.exec(line);
    if (header) {
      name = header[1]!;
      blocks.set(name, '');
    } else if (name !== undefined) {
      blocks.set(name, `${blocks.get(name)}${line}\n`);
    }
  }
  return blocks;
}

test('docker-compose.yml validates with .env.example and has the expected shape', (t) => {
  const command = composeCommand();
  if (!command) {
    t.skip('docker-compose not installed: `apt-get install -y docker-compose` (v1) or the docker compose v2 plugin runs this check');
    return;
  }
  // env_file: .env must exist beside the compose file, so validate a copy with .env.example as .env
  // (the build context only has to exist for `config`). A clean environment keeps the caller's
  // POSTGRES_* or SETTLE_* variables from overriding the file's.
  const dir = mkdtempSync(join(tmpdir(), 'settle-compose-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  copyFileSync(join(root, 'docker-compose.yml'), join(dir, 'docker-compose.yml'));
  copyFileSync(join(root, '.env.example'), join(dir, '.env'));
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? dir, LANG: 'C.UTF-8' };
  const run = (args: string[]) =>
    spawnSync(command[0]!, [...command.slice(1), '-f', join(dir, 'docker-compose.yml'), ...args], { cwd: dir, env, encoding: 'utf8' });

  const quiet = run(['config', '-q']);
  assert.equal(quiet.status, 0, `${command.join(' ')} config -q failed:\n${quiet.stderr}${quiet.stdout}`);

  const rendered = run(['config']);
  assert.equal(rendered.status, 0, rendered.stderr);
  const services = serviceBlocks(rendered.stdout);
  assert.deepEqual([...services.keys()].sort(), ['api', 'listener', 'migrate', 'postgres', 'worker']);
  const { api, listener, migrate, postgres, worker } = Object.fromEntries(services) as Record<string, string>;

  assert.match(postgres!, /^ {4}image: ['"]?postgres:16['"]?$/m);
  assert.match(postgres!, /^ {4}healthcheck:\n(?: {6}.*\n)*? {6}test:[^]*?pg_isready/m);
  assert.match(postgres!, /^ {6}POSTGRES_PASSWORD: ['"]?change-me/m, 'POSTGRES_PASSWORD comes from the env file');
  assert.match(postgres!, /:\/var\/lib\/postgresql\/data\b/, 'database on a volume');

  assert.match(migrate!, /^ {4}command:\n {4}- migrate$/m);
  assert.match(migrate!, /^ {4}depends_on:\n {6}postgres:\n {8}condition: service_healthy$/m);

  assert.match(api!, /^ {4}command:\n {4}- serve$/m);
  assert.match(api!, /:8080(\/tcp)?['"]?$|target: 8080/m, 'publishes port 8080');
  assert.match(api!, /^ {4}healthcheck:\n(?: {6}.*\n)*? {6}test:[^]*?\/readyz/m);
  assert.match(api!, /^ {6}migrate:\n {8}condition: service_completed_successfully$/m);

  assert.match(worker!, /^ {4}command:\n {4}- worker$/m);
  assert.match(worker!, /^ {6}replicas: 2$/m, 'two worker replicas');
  assert.match(worker!, /^ {6}migrate:\n {8}condition: service_completed_successfully$/m);

  // HL7 v2 arrives at one listener process (a port takes one process; workers are replicated), on the
  // connector file's port, bound to every interface of the container.
  const connectorPort = (JSON.parse(readFileSync(join(root, 'connectors', 'pm-hl7v2.json'), 'utf8')) as { listen: { port: number } }).listen.port;
  assert.match(listener!, /^ {4}command:\n {4}- listen\n {4}- --host\n {4}- 0\.0\.0\.0$/m);
  assert.match(listener!, new RegExp(`^ {4}- published: ['"]?${connectorPort}['"]?\n {6}target: ${connectorPort}$|:${connectorPort}(/tcp)?['"]?$`, 'm'), `publishes the connector's port ${connectorPort}`);
  assert.match(listener!, new RegExp(`^ {4}healthcheck:\n(?: {6}.*\n)*? {6}test:[^]*?connect\\(${connectorPort},`, 'm'), 'health = the MLLP port accepts connections');
  assert.doesNotMatch(listener!, /replicas:/, 'one listener');
  assert.doesNotMatch(worker!, /- listen$/m);
  assert.match(listener!, /^ {6}migrate:\n {8}condition: service_completed_successfully$/m);

  for (const [name, block] of [['migrate', migrate], ['api', api], ['worker', worker], ['listener', listener]] as const) {
    assert.match(block!, /^ {6}SETTLE_ENCRYPTION_KEYS: /m, `${name} gets its settings from the env file`);
    assert.match(block!, /^ {4}image: ['"]?settle:latest['"]?$/m, `${name} runs the settle image`);
  }
  assert.doesNotMatch(postgres!, /SETTLE_/, 'the postgres container does not receive Settle keys');
});
