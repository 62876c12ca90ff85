/**
 * Each practice's `PaymentGateway`, for everything that moves money (Checkout, plan charges, refunds,
 * reconciliation): the practice's own Stripe account when `STRIPE_SECRET_KEYS` names its slug, else the one
 * `STRIPE_SECRET_KEY` (a single practice, or the account of every practice not named), else the sandbox,
 * clearly labelled. A key never serves a practice it was not configured for: with `STRIPE_SECRET_KEYS` the
 * practice's slug is read from the database before its gateway is chosen.
 */
import type { Logger } from 'winston';
import type { Clock } from '../domain/clock.ts';
import type { Database } from '../store/database.ts';
import { PracticeRepository } from '../store/practices.ts';
import type { GatewayFor, PaymentGateway } from './gateway.ts';
import { SandboxGateway } from './sandbox-gateway.ts';
import { StripeGateway, type StripeGatewayOptions } from './stripe-gateway.ts';

/** What {@link practiceGateways} chooses from. */
export interface PracticeGatewaysOptions {
  readonly db: Database;
  readonly clock: Clock;
  readonly logger: Pick<Logger, 'info' | 'warn'>;
  /** Where the sandbox checkout page is served. */
  readonly baseUrl: string;
  /** `STRIPE_SECRET_KEY`: the Stripe account of every practice `secretKeys` does not name. */
  readonly secretKey?: string | undefined;
  /** `STRIPE_SECRET_KEYS`: practice slug → that practice's own Stripe key. */
  readonly secretKeys?: ReadonlyMap<string, string> | undefined;
  /** Where the Stripe SDK connects (tests: the Stripe fake). */
  readonly stripe?: StripeGatewayOptions | undefined;
  /** Given to the sandbox: wakes write-back delivery after its events queued write-backs. */
  readonly onWritebacksQueued?: (() => void) | undefined;
}

/**
 * The gateway of each practice (see the module comment), built once per practice and per key.
 * @returns the lookup; it rejects when the practice does not exist (with `secretKeys` set).
 */
export function practiceGateways(options: PracticeGatewaysOptions): GatewayFor {
  const stripeByKey = new Map<string, StripeGateway>();
  const byPractice = new Map<string, Promise<PaymentGateway>>();
  const practices = new PracticeRepository(options.db.pool);

  const keyOf = async (practiceId: string): Promise<string | undefined> => {
    if (!options.secretKeys || options.secretKeys.size === 0) return options.secretKey;
    const practice = await practices.findById(practiceId);
    if (!practice) throw new Error(`no practice ${practiceId}: its Stripe account cannot be chosen`);
    return options.secretKeys.get(practice.slug) ?? options.secretKey;
  };
  const build = async (practiceId: string): Promise<PaymentGateway> => {
    const key = await keyOf(practiceId);
    if (key === undefined) {
      return new SandboxGateway({
        db: options.db, clock: options.clock, practiceId, logger: options.logger, baseUrl: options.baseUrl,
        ...(options.onWritebacksQueued ? { onWritebacksQueued: options.onWritebacksQueued } : {}),
      });
    }
    let stripe = stripeByKey.get(key);
    if (!stripe) stripeByKey.set(key, (stripe = new StripeGateway(key, options.stripe)));
    return stripe;
  };
  return (practiceId) => {
    let gateway = byPractice.get(practiceId);
    if (!gateway) {
      gateway = build(practiceId);
      byPractice.set(practiceId, gateway);
      gateway.catch(() => byPractice.delete(practiceId));
    }
    return gateway;
  };
}
