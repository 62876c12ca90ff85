/**
 * `settle payments …`:
 *
 *   settle payments refund PAYMENT_ID [--amount 12.34] [--reason duplicate|requested_by_customer] [--idempotency-key KEY] [--practice SLUG]
 *   settle payments reconcile --date YYYY-MM-DD [--practice SLUG] [--json]
 *
 * A refund goes to the practice's gateway (its Stripe account from STRIPE_SECRET_KEYS, else STRIPE_SECRET_KEY, else
 * the sandbox: `practiceGateways`); the ledger changes
 * when Stripe's `charge.refunded` webhook reaches the engine. With `--idempotency-key`, running the same command
 * again (after a timeout, say) reports the first refund and starts no second one. Reconcile runs the day's reconciliation now,
 * stores it (as the daily job would) and prints it; exit code 1 when it found mismatches.
 */
import { Command } from 'commander';
import type { Settings } from '../config/settings.ts';
import type { GatewayFor } from './gateway.ts';
import { systemClock } from '../domain/clock.ts';
import { formatMoney, MoneyError, parseMoney } from '../domain/money.ts';
import type { Database } from '../store/database.ts';
import { PaymentRepository } from '../store/payments.ts';
import { DEFAULT_PAY_BASE_URL } from '../store/guarantor-pay-links.ts';
import { reconcileDay, ReconcileDateError, type DailyReconciliation } from './reconcile-job.ts';
import { isIdempotencyKey, RefundError, startRefund, type RefundReason } from './refund-service.ts';
import { practiceGateways } from './practice-gateways.ts';

/** What the command needs from main.ts. */
export interface PaymentsCommandDependencies {
  withDatabase<T>(work: (db: Database, settings: Settings) => Promise<T>): Promise<T>;
  out(text: string): void;
  exitError(code: 1 | 2, message: string): Error;
  practiceFor(db: Database, slug: string | undefined): Promise<{ id: string }>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const quietLogger = { info: () => {}, warn: (message: string) => void process.stderr.write(`${message}\n`) } as never;

/** Each practice's gateway, as the engine chooses it. */
function gatewaysFrom(db: Database, settings: Settings): GatewayFor {
  return practiceGateways({
    db, clock: systemClock, logger: quietLogger, baseUrl: settings.publicUrl ?? DEFAULT_PAY_BASE_URL,
    secretKey: settings.stripeSecretKey, secretKeys: settings.stripeSecretKeys,
  });
}

/** The report as text: the counts, then one line per mismatch (ids and amounts only). */
export function formatReconciliation(r: DailyReconciliation): string {
  const lines = [
    `Reconciliation ${r.date}${r.sandbox ? ' (sandbox: no Stripe balance transactions)' : ''}`,
    `  movements ${r.movements}, balance transactions ${r.balanceTransactions}, matched ${r.matched}, mismatches ${r.mismatches.length}`,
  ];
  for (const m of r.mismatches) {
    const { kind, ...rest } = m;
    lines.push(`  ${kind}: ${Object.entries(rest).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : String(v)}`).join(' ')}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The `payments` command group. */
export function paymentsCommand(deps: PaymentsCommandDependencies): Command {
  const command = new Command('payments').description('Refunds and daily reconciliation.');
  command
    .command('refund')
    .description('Refund a payment (everything not yet refunded, or --amount); the ledger changes when Stripe confirms by webhook.')
    .argument('<paymentId>', 'the payment id (as GET /payments/{id} shows it)')
    .option('--amount <amount>', 'how much, in the payment\'s currency, e.g. 12.34')
    .option('--reason <reason>', 'duplicate or requested_by_customer')
    .option('--idempotency-key <key>', 'the same key again reports the first refund instead of starting another (1–255 visible ASCII characters)')
    .option('--practice <slug>', 'the practice (default: default)')
    .action(async (paymentId: string, options: { amount?: string; reason?: string; idempotencyKey?: string; practice?: string }) => {
      if (!UUID.test(paymentId)) throw deps.exitError(2, `"${paymentId}" is not a payment id (a uuid, as GET /payments/{id} shows it)`);
      if (options.reason !== undefined && options.reason !== 'duplicate' && options.reason !== 'requested_by_customer') {
        throw deps.exitError(2, `--reason must be duplicate or requested_by_customer, not "${options.reason}"`);
      }
      if (options.amount !== undefined && !/^\d+(\.\d{1,2})?$/.test(options.amount)) throw deps.exitError(2, `--amount must look like 12.34, not "${options.amount}"`);
      if (options.idempotencyKey !== undefined && !isIdempotencyKey(options.idempotencyKey)) throw deps.exitError(2, '--idempotency-key must be 1 to 255 visible ASCII characters');
      await deps.withDatabase(async (db, settings) => {
        const practice = await deps.practiceFor(db, options.practice);
        const payment = await new PaymentRepository(db.pool, systemClock).get(practice.id, paymentId);
        if (!payment) throw deps.exitError(1, `no payment ${paymentId} in this practice`);
        let amount;
        try {
          amount = options.amount === undefined ? undefined : parseMoney(options.amount, payment.amount.currency);
        } catch (error) {
          if (error instanceof MoneyError) throw deps.exitError(2, `--amount: ${error.message}`);
          throw error;
        }
        try {
          const refund = await startRefund({ db, clock: systemClock, gateway: await gatewaysFrom(db, settings)(practice.id) }, {
            practiceId: practice.id, paymentId, ...(amount ? { amount } : {}), ...(options.reason ? { reason: options.reason as RefundReason } : {}), requestedBy: 'cli',
            ...(options.idempotencyKey !== undefined ? { idempotencyKey: options.idempotencyKey } : {}),
          });
          if (refund.replayed) deps.out('Already requested with this idempotency key: nothing new was started.\n');
          deps.out(`Refund ${refund.id} of ${formatMoney(refund.amount)} ${refund.amount.currency}: ${refund.status} (Stripe ${refund.stripeRefundId}). The ledger changes when the webhook arrives.\n`);
        } catch (error) {
          if (error instanceof RefundError) throw deps.exitError(1, error.message);
          throw error;
        }
      });
    });
  command
    .command('reconcile')
    .description('Reconcile one day now (payments and refunds vs write-backs vs Stripe balance transactions) and print every mismatch.')
    .requiredOption('--date <date>', 'the practice-local day, YYYY-MM-DD')
    .option('--practice <slug>', 'the practice (default: default)')
    .option('--json', 'print the report as JSON')
    .action(async (options: { date: string; practice?: string; json?: boolean }) => {
      if (!/^\d{4}-\d{2}-\d{2}$/.test(options.date) || Number.isNaN(Date.parse(`${options.date}T00:00:00Z`))) throw deps.exitError(2, `--date must be a date YYYY-MM-DD, not "${options.date}"`);
      const report = await deps.withDatabase(async (db, settings) => {
        const practice = await deps.practiceFor(db, options.practice);
        try {
          return await reconcileDay({ db, clock: systemClock, logger: quietLogger, gatewayFor: gatewaysFrom(db, settings) }, { practiceId: practice.id, date: options.date });
        } catch (error) {
          if (error instanceof ReconcileDateError) throw deps.exitError(2, error.message);
          throw error;
        }
      });
      deps.out(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatReconciliation(report));
      if (report.mismatches.length > 0) process.exitCode = 1;
    });
  return command;
}
