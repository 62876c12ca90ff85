/**
 * `settle sandbox-ehr`: runs the sandbox EHR (a FHIR R4 server with fictitious data) in the foreground for people
 * trying Settle, seeded with a generated practice and, with `--examples`, HL7's official example resources.
 *
 *   settle sandbox-ehr [--port 8090] [--host 127.0.0.1] [--patients 2000] [--seed 42] [--examples]
 *                      [--client-id ID --public-key-file PEM --kid KID]
 *
 * The defaults match `connectors/generic-fhir-r4.json` (`http://127.0.0.1:8090/fhir/R4`, auth `none`), so
 * `settle sync generic-fhir-r4` pulls from it as shipped. Stops on SIGINT or SIGTERM (exit 0). Errors (port in use,
 * examples not installed, unreadable key) go to stderr with exit code 1.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { displayMoney, money } from '../domain/money.ts';
import { integerOption } from './options.ts';
import { HL7_EXAMPLES_PACKAGE, loadHl7Examples, type Hl7ExamplesSummary } from '../sandbox-ehr/examples.ts';
import { seedPractice, type SeedSummary } from '../sandbox-ehr/seed.ts';
import { startSandboxEhr, type SandboxClient, type SandboxEhr } from '../sandbox-ehr/server.ts';

/** Base URL of the shipped `generic-fhir-r4` connector, which the defaults serve. */
export const SANDBOX_DEFAULT_BASE_URL = 'http://127.0.0.1:8090/fhir/R4';

interface SandboxCommandOptions {
  port: number;
  host: string;
  patients: number;
  seed: number;
  examples?: boolean;
  clientId?: string;
  publicKeyFile?: string;
  kid?: string;
}

/** `received` resolves on the first SIGINT or SIGTERM (which then no longer end the process); `cancel` stops listening. */
function catchSignals(): { received: Promise<NodeJS.Signals>; cancel(): void } {
  let cancel = () => {};
  const received = new Promise<NodeJS.Signals>((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      cancel();
      resolve(signal);
    };
    cancel = () => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
  return { received, cancel };
}

/** The text printed once the sandbox is up. */
export function sandboxBanner(sandbox: Pick<SandboxEhr, 'baseUrl' | 'tokenUrl'>, seeded: SeedSummary, seed: number, examples: Hl7ExamplesSummary | undefined, client: SandboxClient | undefined): string {
  const lines = [
    'Settle sandbox EHR: a FHIR R4 test server holding FICTITIOUS patients and balances, kept in memory only.',
    'It is not a real EHR; do not put real patient data in it.',
    '',
    `  FHIR base URL  ${sandbox.baseUrl}`,
    `  Token URL      ${sandbox.tokenUrl}${
      client ? `  (SMART Backend Services: client ${client.clientId}, kid ${client.kid}; FHIR requests need a bearer token)` : '  (no client registered: FHIR requests need no token)'
    }`,
    `  Seeded         ${seeded.patients} patients, ${seeded.accounts} accounts, ${seeded.coverages} coverages, ${seeded.invoices} invoices ` +
      `(${seeded.lineItems} line items), patient balances ${displayMoney(money(seeded.patientBalanceCents, 'USD'))} (seed ${seed})`,
  ];
  if (examples) {
    const counts = Object.entries(examples.loaded).map(([type, n]) => `${n} ${type}`).join(', ');
    lines.push(`  HL7 examples   ${counts} from ${HL7_EXAMPLES_PACKAGE} ${examples.version}${examples.skipped.length ? `; ${examples.skipped.length} skipped (${examples.skipped.map((s) => `${s.file}: ${s.reason}`).join('; ')})` : ''}`);
  }
  lines.push('');
  if (sandbox.baseUrl === SANDBOX_DEFAULT_BASE_URL && !client) {
    lines.push('Sync it into Settle (connectors/generic-fhir-r4.json points here):', '  settle sync generic-fhir-r4');
  } else {
    lines.push(
      `Sync it into Settle: copy connectors/generic-fhir-r4.json, set its baseUrl to ${sandbox.baseUrl}` +
        `${client ? ' and its auth to smart-backend with this client id, kid and the private key' : ''}, then:`,
      '  settle sync <that connector name>',
    );
  }
  lines.push('Stop with Ctrl+C.', '');
  return lines.join('\n');
}

/** The `sandbox-ehr` command; `out` receives what it prints. */
export function sandboxEhrCommand(out: (text: string) => void): Command {
  return new Command('sandbox-ehr')
    .description('Run a sandbox EHR (FHIR R4, fictitious data, in memory) to try Settle against; stops on Ctrl+C.')
    .option('--port <port>', 'TCP port (0: any free port, printed)', integerOption('--port', 0, 65_535), 8090)
    .option('--host <host>', 'interface to listen on', '127.0.0.1')
    .option('--patients <n>', 'patients in the generated practice (each with an account, most with coverage and invoices)', integerOption('--patients', 0, 1_000_000), 2000)
    .option('--seed <n>', 'seed of the generator: the same seed gives the same practice', integerOption('--seed', 0, 2 ** 31 - 1), 42)
    .option('--examples', "also load HL7's official R4 examples of Patient, Account, Invoice, ChargeItem and Coverage (package hl7.fhir.r4.examples, installed in a checkout)")
    .option('--client-id <id>', 'register a SMART Backend Services client; FHIR requests then need a bearer token')
    .option('--public-key-file <pem>', "the client's public key (PEM, RSA for RS384 or P-384 for ES384)")
    .option('--kid <kid>', 'the key id the client puts in its JWT header')
    .action(async (options: SandboxCommandOptions) => {
      const fail = (message: string) => {
        process.stderr.write(`settle sandbox-ehr: ${message}\n`);
        process.exitCode = 1;
      };
      const clientParts = [options.clientId, options.publicKeyFile, options.kid].filter((v) => v !== undefined).length;
      if (clientParts !== 0 && clientParts !== 3) {
        fail('--client-id, --public-key-file and --kid go together: give all three to register a client, or none.');
        return;
      }
      let client: SandboxClient | undefined;
      if (options.clientId !== undefined) {
        try {
          client = { clientId: options.clientId, kid: options.kid!, publicKeyPem: readFileSync(options.publicKeyFile!, 'utf8') };
        } catch (error) {
          fail(`cannot read --public-key-file ${options.publicKeyFile}: ${(error as Error).message}`);
          return;
        }
      }
      // Caught from here on, so a signal while seeding still stops the sandbox cleanly.
      const signals = catchSignals();
      let sandbox: SandboxEhr;
      try {
        sandbox = await startSandboxEhr({ port: options.port, host: options.host, clients: client ? [client] : [] });
      } catch (error) {
        const e = error as NodeJS.ErrnoException;
        if (e.code === 'EADDRINUSE') fail(`port ${options.port} on ${options.host} is in use: stop what holds it or pick another with --port (0 for any free port).`);
        else if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND') fail(`cannot listen on ${options.host}: ${e.message}`);
        else if (client) fail(`cannot start with that client: ${e.message} (is ${options.publicKeyFile} a PEM public key?)`);
        else fail(`cannot start: ${e.message}`);
        signals.cancel();
        return;
      }
      try {
        const seeded = await seedPractice(sandbox.repo, { patients: options.patients, seed: options.seed });
        const examples = options.examples ? await loadHl7Examples(sandbox.repo) : undefined;
        out(sandboxBanner(sandbox, seeded, options.seed, examples, client));
      } catch (error) {
        signals.cancel();
        await sandbox.close();
        fail((error as Error).message);
        return;
      }
      const signal = await signals.received;
      out(`${signal}: stopping the sandbox EHR.\n`);
      await sandbox.close();
    });
}
