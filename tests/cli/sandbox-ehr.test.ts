import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Bundle } from '@medplum/fhirtypes';
import { MemoryRepository } from '@medplum/fhir-router';
import { SANDBOX_DEFAULT_BASE_URL } from '../../src/cli/sandbox-command.ts';
import { Hl7ExamplesMissingError, loadHl7Examples } from '../../src/sandbox-ehr/examples.ts';
import { startSandboxEhr } from '../../src/sandbox-ehr/server.ts';
import { ROOT, runCli } from '../support/cli.ts';

interface Sandbox {
  child: ChildProcess;
  baseUrl: string;
  output(): string;
  exited: Promise<number | null>;
}

const running = new Set<ChildProcess>();
after(() => {
  for (const child of running) child.kill('SIGKILL');
});

/** Runs `settle sandbox-ehr ...args` until it prints its FHIR base URL. */
async function startSandbox(args: string[]): Promise<Sandbox> {
  const child = spawn(process.execPath, ['bin/settle.js', 'sandbox-ehr', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = once(child, 'exit').then(([code]) => {
    running.delete(child);
    return code as number | null;
  });
  const baseUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no base URL within 60 s:\n${output}`)), 60_000);
    const look = () => {
      const match = /FHIR base URL\s+(\S+)/.exec(output);
      if (match && output.includes('Stop with Ctrl+C.')) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stdout.on('data', look);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before printing its base URL:\n${output}`));
    });
  });
  return { child, baseUrl, output: () => output, exited };
}

describe('settle sandbox-ehr', () => {
  it('serves a generated practice on a free port with HAPI-style paging, labelled as fictitious, and stops on SIGTERM with 0', async () => {
    const sandbox = await startSandbox(['--port', '0', '--patients', '50']);
    assert.match(sandbox.baseUrl, /^http:\/\/127\.0\.0\.1:\d+\/fhir\/R4$/);
    assert.notEqual(sandbox.baseUrl, 'http://127.0.0.1:0/fhir/R4', 'the port actually chosen is printed');
    const text = sandbox.output();
    assert.match(text, /FICTITIOUS/);
    assert.match(text, /Token URL {6}http:\/\/127\.0\.0\.1:\d+\/auth\/token/);
    assert.match(text, /Seeded {9}50 patients, 50 accounts, \d+ coverages, \d+ invoices \(\d+ line items\), patient balances \$[\d,]+\.\d\d \(seed 42\)/);
    assert.match(text, /settle sync/);

    const page = (await (await fetch(`${sandbox.baseUrl}/Patient?_count=10`)).json()) as Bundle;
    assert.equal(page.resourceType, 'Bundle');
    assert.equal(page.total, 50);
    assert.equal(page.entry?.length, 10);
    const next = page.link?.find((l) => l.relation === 'next')?.url;
    assert.ok(next, 'a next link');
    assert.match(next, /\?_getpages=[^&]+&_getpagesoffset=10&_count=10/);
    const second = (await (await fetch(next)).json()) as Bundle;
    assert.equal(second.entry?.length, 10);
    assert.notEqual(second.entry?.[0]?.resource?.id, page.entry?.[0]?.resource?.id);

    sandbox.child.kill('SIGTERM');
    assert.equal(await sandbox.exited, 0);
    assert.match(sandbox.output(), /SIGTERM: stopping the sandbox EHR\.\n$/);
  });

  it("loads HL7's official examples with --examples and stops on SIGINT with 0", async () => {
    const sandbox = await startSandbox(['--port', '0', '--patients', '5', '--seed', '7', '--examples']);
    assert.match(sandbox.output(), /HL7 examples {3}\d+ Patient, \d+ Account, 1 Invoice, 1 ChargeItem, \d+ Coverage from hl7\.fhir\.r4\.examples 4\.0\.1\n/);
    const response = await fetch(`${sandbox.baseUrl}/Invoice/example`);
    assert.equal(response.status, 200);
    const invoice = (await response.json()) as { resourceType: string; id: string; totalNet?: unknown };
    assert.equal(invoice.resourceType, 'Invoice');
    assert.equal(invoice.id, 'example');
    const patients = (await (await fetch(`${sandbox.baseUrl}/Patient?_count=1`)).json()) as Bundle;
    assert.ok((patients.total ?? 0) > 5, 'examples added to the 5 generated patients');
    sandbox.child.kill('SIGINT');
    assert.equal(await sandbox.exited, 0);
  });

  it('registers a SMART client whose key it verifies, and then wants a bearer token', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'settle-sandbox-'));
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const pem = join(dir, 'public.pem');
    writeFileSync(pem, publicKey.export({ type: 'spki', format: 'pem' }));
    const sandbox = await startSandbox(['--port', '0', '--patients', '3', '--client-id', 'settle-demo', '--public-key-file', pem, '--kid', 'k1']);
    assert.match(sandbox.output(), /client settle-demo, kid k1/);
    assert.equal((await fetch(`${sandbox.baseUrl}/Patient`)).status, 401);
    assert.equal((await fetch(`${sandbox.baseUrl}/metadata`)).status, 200);
    sandbox.child.kill('SIGTERM');
    assert.equal(await sandbox.exited, 0);
  });

  it('refuses half a client, an unreadable key and a bad port with exit 1 and a message', async () => {
    const half = await runCli(['sandbox-ehr', '--port', '0', '--client-id', 'x'], {});
    assert.equal(half.code, 1);
    assert.match(half.stderr, /--client-id, --public-key-file and --kid go together/);
    const missing = await runCli(['sandbox-ehr', '--port', '0', '--client-id', 'x', '--kid', 'k', '--public-key-file', '/nonexistent.pem'], {});
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read --public-key-file \/nonexistent\.pem/);
    const port = await runCli(['sandbox-ehr', '--port', 'eighty'], {});
    assert.notEqual(port.code, 0);
    assert.match(port.stderr, /--port must be a whole number from 0 to 65535/);
  });

  it('defaults to the base URL of the shipped generic-fhir-r4 connector', async () => {
    const connector = JSON.parse(readFileSync(join(ROOT, 'connectors', 'generic-fhir-r4.json'), 'utf8')) as { baseUrl: string; auth: { method: string } };
    assert.equal(connector.baseUrl, SANDBOX_DEFAULT_BASE_URL);
    assert.equal(connector.auth.method, 'none', 'the sandbox registers no client by default');
    const sandbox = await startSandboxEhr();
    try {
      assert.equal(sandbox.baseUrl.replace(/:\d+\//, ':8090/'), SANDBOX_DEFAULT_BASE_URL, 'the server serves FHIR under /fhir/R4');
    } finally {
      await sandbox.close();
    }
    const help = await runCli(['sandbox-ehr', '--help'], {});
    assert.match(help.stdout, /--port <port>.*\(default: 8090\)/);
    assert.match(help.stdout, /--host <host>.*\(default: "127\.0\.0\.1"\)/);
  });
});

describe("HL7's examples loader", () => {
  it('says the package is missing when it cannot be resolved', async () => {
    const elsewhere = join(mkdtempSync(join(tmpdir(), 'settle-no-examples-')), 'x.js');
    await assert.rejects(loadHl7Examples(new MemoryRepository(), { resolveFrom: elsewhere }), (e: Error) => {
      assert.ok(e instanceof Hl7ExamplesMissingError);
      assert.match(e.message, /hl7\.fhir\.r4\.examples is a development dependency.*npm install.*leave out --examples/);
      return true;
    });
  });

  it('loads only types the sandbox serves and counts what the repository refuses', async () => {
    const repo = new MemoryRepository();
    const first = await loadHl7Examples(repo);
    assert.deepEqual(Object.keys(first.loaded), ['Patient', 'Account', 'Invoice', 'ChargeItem', 'Coverage']);
    assert.equal(first.loaded.Invoice, 1);
    assert.ok(first.loaded.Patient! > 10);
    assert.deepEqual(first.skipped, []);
    const again = await loadHl7Examples(repo, { types: ['Invoice'] });
    assert.deepEqual(again.loaded, { Invoice: 0 });
    assert.deepEqual(again.skipped, [{ file: 'Invoice-example.json', reason: 'Assigned ID is already in use' }]);
    await assert.rejects(loadHl7Examples(repo, { types: ['Observation'] }), /the sandbox EHR does not serve Observation/);
  });
});
