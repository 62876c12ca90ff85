/**
 * Shared set-up for the write-back tests: real payments through the real webhook handler (so the outbox rows
 * are the ones production writes), connector files with a `writeBack` section, and a real MLLP peer.
 */
import net from 'node:net';
import { loadDataFiles, type DataFile } from '../../src/config/data-files.ts';
import { silentLogger as quietLogger } from '../../src/config/logger.ts';
import { encodeFrame, MllpFramer } from '../../src/connectors/hl7v2/mllp-framer.ts';
import type { ManualClock } from '../../src/domain/clock.ts';
import { money } from '../../src/domain/money.ts';
import { loadMappings } from '../../src/mapping/load.ts';
import { handleStripeEvent } from '../../src/payments/webhook-handler.ts';
import type { WritebackDeliveryDeps } from '../../src/writeback/delivery.ts';
import type { Database } from '../../src/store/database.ts';
import { PaymentRepository, type Payment } from '../../src/store/payments.ts';
import { ROOT } from '../support/cli.ts';
import { cipher, pendingPayment, refundEvent, sandboxCheckoutEvents, seedHousehold, silentLogger, type Household } from '../payments/webhook-fixtures.ts';

export { seedHousehold, silentLogger, type Household };

/** The repository's data files, loaded once: mappings (for the Oracle preset) and fhir-profiles/. */
export const repoFiles = loadDataFiles(ROOT);
export const repoMappings = loadMappings(ROOT);

/** A fhir-r4 connector file for `practice` pointing at `baseUrl`, with write-back enabled. */
export function fhirConnector(practice: string, baseUrl: string, writeBack: Record<string, unknown> = {}, name = 'ehr'): DataFile {
  return {
    name, file: `connectors/${name}.json`, absolutePath: '',
    data: {
      name, description: 'test EHR', practice, transport: 'fhir-r4', baseUrl, auth: { method: 'none' }, resources: [{ type: 'Invoice' }],
      schedule: { every: '1 hour' }, pageSize: 100, rateLimitPerSecond: 100_000,
      writeBack: { enabled: true, renderer: 'payment-reconciliation', maxAttempts: 10, retry: { initialSeconds: 30, maxSeconds: 600 }, ...writeBack },
    },
  };
}

/** An hl7v2-mllp connector file for `practice` whose outbound peer is `port`, with write-back enabled. */
export function hl7Connector(practice: string, port: number, writeBack: Record<string, unknown> = {}): DataFile {
  return {
    name: 'pm', file: 'connectors/pm.json', absolutePath: '',
    data: {
      name: 'pm', description: 'test PM', practice, transport: 'hl7v2-mllp', listen: { host: '127.0.0.1', port: 1 }, acceptedMessageTypes: ['DFT^P03'],
      charset: 'UTF-8', outbound: { host: '127.0.0.1', port }, retentionDays: 30,
      writeBack: { enabled: true, renderer: 'hl7-dft-p03', receivingApplication: 'PMS', maxAttempts: 5, ackTimeoutSeconds: 5, ...writeBack },
    },
  };
}

/** Delivery dependencies over `db` with these connectors. */
export function deliveryDeps(db: Database, clock: ManualClock, connectors: DataFile[], extra: Partial<WritebackDeliveryDeps> = {}): WritebackDeliveryDeps {
  return { db, clock, logger: quietLogger(), connectors, mappings: repoMappings, profiles: repoFiles.profiles, random: () => 0.5, ...extra };
}

/**
 * A succeeded payment of `amountMinor` for the household's two balances, through the sandbox checkout events and
 * the real webhook handler: its `payment-<id>` row is in the outbox.
 */
export async function paidPayment(db: Database, clock: ManualClock, h: Household, amountMinor: number): Promise<Payment> {
  const payment = await pendingPayment(db, clock, h, money(amountMinor, 'USD'));
  for (const event of sandboxCheckoutEvents(clock, payment)) {
    await handleStripeEvent({ db, clock, practiceId: h.practiceId, cipher, logger: silentLogger }, event);
  }
  return (await new PaymentRepository(db.pool, clock).get(h.practiceId, payment.id))!;
}

/** Refunds `cumulativeMinor` of a paid payment (Stripe's cumulative figure): a `refund-…` row joins the outbox. */
export async function refund(db: Database, clock: ManualClock, h: Household, payment: Payment, cumulativeMinor: number): Promise<void> {
  await handleStripeEvent(
    { db, clock, practiceId: h.practiceId, cipher, logger: silentLogger },
    refundEvent(payment.stripe.charge ?? `ch_${payment.id}`, payment.stripe.paymentIntent!, payment.amount.amount, cumulativeMinor),
  );
}

/** A real MLLP peer on a loopback socket: records every message and answers each with `answer(n)` (AA, AE, AR). */
export interface MllpPeer {
  port: number;
  received: string[];
  close(): Promise<void>;
}

/** Starts an MLLP peer that answers message n (0-based) with the code `answer(n)` and, for AE/AR, a reason. */
export async function startMllpPeer(answer: (n: number) => 'AA' | 'AE' | 'AR'): Promise<MllpPeer> {
  const received: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const framer = new MllpFramer({ maxMessageBytes: 1024 * 1024 });
    socket.on('data', (chunk: Buffer) => {
      for (const frame of framer.push(chunk)) {
        if (frame.kind !== 'message') continue;
        const text = frame.payload.toString('utf8');
        const n = received.push(text) - 1;
        const controlId = text.split('\r')[0]!.split('|')[9]!;
        const code = answer(n);
        const reason = code === 'AA' ? '' : '|Unknown account number';
        const err = code === 'AA' ? '' : '\rERR||PID^1^18|204^Unknown key identifier^HL70357|E';
        socket.write(encodeFrame(`MSH|^~\\&|PMS||SETTLE||20260601120000||ACK^P03^ACK|ack${n}|P|2.5.1\rMSA|${code}|${controlId}${reason}${err}`));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    received,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}
