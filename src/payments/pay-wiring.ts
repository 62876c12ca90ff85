/**
 * Wiring of payments into the engine: the pay-link keys, each practice's gateway (its own Stripe account from
 * `STRIPE_SECRET_KEYS`, else `STRIPE_SECRET_KEY`, else the sandbox: `practiceGateways`), the webhook secrets,
 * and the express pieces the API mounts:
 * the patient's pages (a plain router, before the JSON parser, with the raw body parser on the webhook paths)
 * and the `POST /webhooks/stripe` and `POST /webhooks/stripe/{practice}` route declarations (in the OpenAPI document).
 *
 * One engine may serve several practices, each with its own Stripe account: each account's webhook endpoint is
 * `/webhooks/stripe/<practice slug>`, verified with that practice's signing secret (`STRIPE_WEBHOOK_SECRETS`),
 * and every row it writes belongs to that practice. `/webhooks/stripe` keeps serving the one webhook practice.
 */
import express, { type Router } from 'express';
import type { Logger } from 'winston';
import { ApiError } from '../api/problem.ts';
import type { AnyRoute } from '../api/routes.ts';
import type { Clock } from '../domain/clock.ts';
import type { Database } from '../store/database.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PracticeRepository } from '../store/practices.ts';
import type { GatewayFor } from './gateway.ts';
import { loadPayLinkKeys } from './pay-link-keys.ts';
import { DEFAULT_PAY_BASE_URL } from '../store/guarantor-pay-links.ts';
import type { PayLinkKeyRing } from '../domain/pay-link.ts';
import { payRouter } from './pay-routes.ts';
import type { PlanTerms } from '../domain/payment-plan.ts';
import { practiceGateways } from './practice-gateways.ts';
import { SANDBOX_WEBHOOK_SECRET } from './sandbox.ts';
import type { StripeGatewayOptions } from './stripe-gateway.ts';
import { processStripeWebhook, STRIPE_PRACTICE_WEBHOOK_PATH, STRIPE_WEBHOOK_PATH, stripeWebhookRoute } from './webhook-route.ts';

/** Plan terms when the policy gives none: $25 minimum installment, up to 12 months. */
export const DEFAULT_PLAN_TERMS: PlanTerms = { minimumInstallmentCents: 2500, maximumMonths: 12 };

/** Everything the API needs to serve pay links, the pay page and the Stripe webhook. */
export interface PaymentsWiring {
  readonly keys: PayLinkKeyRing;
  /** True when no Stripe key is configured at all: the sandbox checkout serves every practice. */
  readonly sandbox: boolean;
  readonly gatewayFor: GatewayFor;
  readonly planTerms: (practiceId: string) => PlanTerms;
  /** Secrets `POST /webhooks/stripe` accepts (`STRIPE_WEBHOOK_SECRET`, and the sandbox's in sandbox mode). */
  readonly webhookSecrets: readonly string[];
  /** The practice whose Stripe account the webhook endpoint serves. */
  readonly webhookPracticeSlug: string;
  /** Per practice slug, the secrets `POST /webhooks/stripe/{practice}` accepts (its own, and the sandbox's in sandbox mode). */
  readonly practiceWebhookSecrets: ReadonlyMap<string, readonly string[]>;
  /** Wakes write-back delivery after a payment, refund or reversal queued write-backs. */
  readonly onWritebacksQueued?: (() => void) | undefined;
}

/** What {@link createPaymentsWiring} reads. */
export interface PaymentsWiringOptions {
  readonly db: Database;
  readonly clock: Clock;
  readonly logger: Pick<Logger, 'info' | 'warn'>;
  readonly dataDir: string;
  /** True with a PostgreSQL server (several processes): a generated pay-link key is then per process. */
  readonly sharedDatabase: boolean;
  readonly publicUrl?: string | undefined;
  readonly payLinkKeys?: string | undefined;
  readonly stripeSecretKey?: string | undefined;
  /** `STRIPE_SECRET_KEYS`: practice slug → its own Stripe key (the others use `stripeSecretKey`). */
  readonly stripeSecretKeys?: ReadonlyMap<string, string> | undefined;
  readonly stripeWebhookSecret?: string | undefined;
  /** `STRIPE_WEBHOOK_SECRETS`: practice slug → the signing secret of its own endpoint. */
  readonly stripeWebhookSecrets?: ReadonlyMap<string, string> | undefined;
  /** The policy's `planTerms`, when it has them. */
  readonly planTerms?: PlanTerms | undefined;
  /** Default `default` (the practice a fresh install creates). */
  readonly webhookPracticeSlug?: string;
  /** Where the Stripe SDK connects (tests: the Stripe fake). */
  readonly stripe?: StripeGatewayOptions;
  /** Wakes write-back delivery after a webhook queued write-backs (the engine's `enqueueSoon`). */
  readonly onWritebacksQueued?: () => void;
}

/**
 * Loads the keys and builds the gateways.
 * @throws PayLinkKeyError on malformed keys.
 */
export async function createPaymentsWiring(options: PaymentsWiringOptions): Promise<PaymentsWiring> {
  const keys = await loadPayLinkKeys({ keys: options.payLinkKeys, dataDir: options.dataDir, shared: options.sharedDatabase, logger: options.logger });
  const secretKeys = options.stripeSecretKeys ?? new Map<string, string>();
  const sandbox = !options.stripeSecretKey && secretKeys.size === 0;
  const gatewayFor = practiceGateways({
    db: options.db, clock: options.clock, logger: options.logger, baseUrl: options.publicUrl ?? DEFAULT_PAY_BASE_URL,
    secretKey: options.stripeSecretKey, secretKeys, stripe: options.stripe, onWritebacksQueued: options.onWritebacksQueued,
  });
  const webhookSecrets = [...(options.stripeWebhookSecret ? [options.stripeWebhookSecret] : []), ...(sandbox ? [SANDBOX_WEBHOOK_SECRET] : [])];
  if (options.stripeSecretKey && !options.stripeWebhookSecret) options.logger.warn('STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not: POST /webhooks/stripe answers 500 until it is');
  const practiceWebhookSecrets = new Map<string, readonly string[]>();
  for (const [slug, secret] of options.stripeWebhookSecrets ?? []) practiceWebhookSecrets.set(slug, [secret, ...(sandbox ? [SANDBOX_WEBHOOK_SECRET] : [])]);
  const terms = options.planTerms ?? DEFAULT_PLAN_TERMS;
  return {
    keys, sandbox, gatewayFor, planTerms: () => terms, webhookSecrets, webhookPracticeSlug: options.webhookPracticeSlug ?? 'default', practiceWebhookSecrets,
    onWritebacksQueued: options.onWritebacksQueued,
  };
}

/** What the API hands the payment pieces. */
export interface PaymentsApiDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly cipher: PhiCipher;
  readonly logger: Pick<Logger, 'info' | 'warn'>;
  readonly publicUrl?: string | undefined;
}

/** The patient's pages and the raw body parser of the webhook: mount with `app.use` BEFORE `express.json`. */
export function paymentsRouter(wiring: PaymentsWiring, deps: PaymentsApiDeps): Router {
  const router = express.Router();
  const raw = express.raw({ type: 'application/json', limit: '1mb' });
  router.post(STRIPE_WEBHOOK_PATH, raw, (_req, _res, next) => next());
  router.post(STRIPE_PRACTICE_WEBHOOK_PATH.replace('{practice}', ':practice'), raw, (_req, _res, next) => next());
  router.use(payRouter({ ...deps, keys: wiring.keys, gatewayFor: wiring.gatewayFor, planTerms: wiring.planTerms }));
  return router;
}

/**
 * `POST /webhooks/stripe` (the wiring's webhook practice) and `POST /webhooks/stripe/{practice}` (each practice
 * named in `STRIPE_WEBHOOK_SECRETS`, with its own secret) for the API's route list.
 */
export function paymentRoutes(wiring: PaymentsWiring, deps: PaymentsApiDeps): AnyRoute[] {
  const practiceIds = new Map<string, Promise<string>>();
  const resolvePractice = (slug: string) => {
    let id = practiceIds.get(slug);
    if (!id) {
      id = new PracticeRepository(deps.db.pool).findBySlug(slug).then((p) => {
        if (!p) {
          practiceIds.delete(slug);
          throw new Error(`the webhook practice "${slug}" does not exist`);
        }
        return p.id;
      });
      practiceIds.set(slug, id);
    }
    return id;
  };
  const base = { db: deps.db, clock: deps.clock, cipher: deps.cipher, logger: deps.logger, ...(wiring.onWritebacksQueued ? { onWritebacksQueued: wiring.onWritebacksQueued } : {}) };
  const route = stripeWebhookRoute({ ...base, secrets: wiring.webhookSecrets, practiceId: '' });
  const perPractice = stripeWebhookRoute({ ...base, secrets: [], practiceId: '' }, STRIPE_PRACTICE_WEBHOOK_PATH);
  return [
    { ...route, handler: async ({ req }) => processStripeWebhook({ ...base, secrets: wiring.webhookSecrets, practiceId: await resolvePractice(wiring.webhookPracticeSlug) }, req.body, req.get('stripe-signature')) },
    {
      ...perPractice,
      handler: async ({ req, params }) => {
        const slug = params.practice!;
        const secrets = wiring.practiceWebhookSecrets.get(slug);
        if (!secrets) throw new ApiError(404, 'unknown_webhook_endpoint', `No Stripe webhook endpoint is configured for the practice "${slug}" (STRIPE_WEBHOOK_SECRETS).`);
        return processStripeWebhook({ ...base, secrets, practiceId: await resolvePractice(slug) }, req.body, req.get('stripe-signature'));
      },
    },
  ];
}
