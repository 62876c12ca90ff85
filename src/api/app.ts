/**
 * The express application: security headers, JSON bodies, request metrics and logs, every route of
 * every stage, and problem documents for everything that goes wrong.
 */
import express, { type Express } from 'express';
import helmet from 'helmet';
import type { Logger } from 'winston';
import type { Clock } from '../domain/clock.ts';
import { ApiKeyRepository } from '../store/api-keys.ts';
import type { Database } from '../store/database.ts';
import { apiKeyRoutes } from './apikey-routes.ts';
import { hl7Routes } from './hl7-routes.ts';
import { connectorRoutes } from '../connectors/fhir/connector-routes.ts';
import { ledgerRoutes } from '../ingest/ledger-routes.ts';
import { outreachRoutes } from '../outreach/routes.ts';
import { unsubscribeRoutes } from '../outreach/unsubscribe-routes.ts';
import { printBatchRoutes } from '../outreach/print-batch-routes.ts';
import { twilioRoutesForApi } from '../outreach/twilio-webhooks.ts';
import { emailBounceRoutes } from '../outreach/email-bounce-routes.ts';
import type { DashboardDependencies } from '../dashboard/context.ts';
import { dashboardRouter } from '../dashboard/router.ts';
import { analyticsRoutes } from '../analytics/routes.ts';
import { auditRoutes } from './audit-routes.ts';
import { paymentRoutes, paymentsRouter, type PaymentsWiring } from '../payments/pay-wiring.ts';
import { writebackRoutes } from '../writeback/routes.ts';
import { paymentAdminRoutes } from '../payments/payment-routes.ts';
import type { MappingRegistry } from '../mapping/load.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { SourceRecordRepository } from '../store/source-records.ts';
import type { EngineMetrics } from './metrics.ts';
import { ApiError, problemHandler } from './problem.ts';
import { mountRoutes, openApiDocument, type AnyRoute, type JsonSchema } from './routes.ts';
import { systemRoutes, type Readiness } from './system-routes.ts';

/** What the API needs from the engine. */
export interface ApiDependencies {
  /** Where the data folders are (settings.configDir). */
  configDir: string;
  db: Database;
  /** Encrypts and decrypts patient contact fields. */
  cipher: PhiCipher;
  /** The compiled mappings. */
  mappings: MappingRegistry;
  clock: Clock;
  logger: Logger;
  metrics: EngineMetrics;
  readiness: Readiness;
  version: string;
  publicUrl?: string;
  /** Pay links, the pay page and the Stripe webhook (`createPaymentsWiring`); absent: not served. */
  payments?: PaymentsWiring;
  /** TWILIO_AUTH_TOKEN: verifies the Twilio webhooks (unset: they answer webhook_not_configured). */
  twilioAuthToken?: string | undefined;
  /** SETTLE_EMAIL_BOUNCE_SECRET: authenticates the bounce webhook (unset: it answers webhook_not_configured). */
  emailBounceSecret?: string | undefined;
  /** A line the dashboard shows on every page of a practice (the live demo's loading progress); see `DashboardDependencies.status`. */
  dashboardStatus?: DashboardDependencies['status'];
}

/** The app, and the routes it serves (the OpenAPI document is built from them). */
export interface Api {
  app: Express;
  routes: AnyRoute[];
  document: JsonSchema;
}

/** Builds the API. */
export function createApi(deps: ApiDependencies): Api {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');
  app.use(helmet());
  app.use((req, res, next) => {
    const started = performance.now();
    res.on('finish', () => {
      const route = req.route?.path ?? 'unmatched';
      const seconds = (performance.now() - started) / 1000;
      deps.metrics.httpDuration.observe({ method: req.method, route, status: String(res.statusCode) }, seconds);
      // The route pattern, never the raw URL: paths and queries may carry identifiers of patients.
      deps.logger.info('http', { method: req.method, route, status: res.statusCode, ms: Math.round(seconds * 1000) });
    });
    next();
  });
  // The patient's pages, and the webhook's raw body (verified byte for byte), before the JSON parser.
  if (deps.payments) app.use(paymentsRouter(deps.payments, deps));
  app.use(express.json({ limit: '1mb', type: ['application/json', 'application/*+json'] }));

  let document: JsonSchema = {};
  const routes: AnyRoute[] = [...systemRoutes(deps.readiness, deps.metrics, () => document), ...apiKeyRoutes(deps.db, deps.clock), ...hl7Routes(deps.db, deps.clock),
    ...connectorRoutes({ db: deps.db, clock: deps.clock, configDir: deps.configDir }),
    ...ledgerRoutes({
      db: deps.db,
      cipher: deps.cipher,
      clock: deps.clock,
      mappings: deps.mappings,
      loadSourceRecord: (key) => new SourceRecordRepository(deps.db.pool, deps.clock).findVersion(key),
    }),
    ...outreachRoutes({ db: deps.db, cipher: deps.cipher, clock: deps.clock }),
    ...unsubscribeRoutes({ db: deps.db, cipher: deps.cipher, clock: deps.clock }),
    ...printBatchRoutes({ db: deps.db, cipher: deps.cipher, clock: deps.clock }),
    ...twilioRoutesForApi({ ...deps, authToken: deps.twilioAuthToken, payLinkKeys: deps.payments?.keys }),
    ...emailBounceRoutes({ db: deps.db, cipher: deps.cipher, clock: deps.clock, logger: deps.logger, secret: deps.emailBounceSecret }),
    ...analyticsRoutes({ db: deps.db, clock: deps.clock }),
    ...auditRoutes({ db: deps.db, clock: deps.clock }),
    ...(deps.payments ? paymentRoutes(deps.payments, deps) : []),
    ...writebackRoutes({ db: deps.db, clock: deps.clock, metrics: deps.metrics }),
    ...paymentAdminRoutes({ db: deps.db, clock: deps.clock, cipher: deps.cipher, logger: deps.logger, gatewayFor: deps.payments?.gatewayFor }),
  ];
  document = openApiDocument(routes, { title: 'Settle API', version: deps.version, serverUrl: deps.publicUrl });

  const keys = new ApiKeyRepository(deps.db.pool, deps.clock);
  const router = express.Router();
  mountRoutes(router, routes, (presented) => keys.authenticate(presented));
  app.use('/dashboard', dashboardRouter({
    db: deps.db, cipher: deps.cipher, clock: deps.clock, logger: deps.logger, configDir: deps.configDir, routes,
    ...(deps.dashboardStatus ? { status: deps.dashboardStatus } : {}),
  }));
  app.use(router);
  app.use((req, _res, next) => next(new ApiError(404, 'not_found', `No route ${req.method} ${req.path}.`)));
  app.use(problemHandler(deps.logger));
  return { app, routes, document };
}
