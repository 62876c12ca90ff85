/**
 * A fresh machine for the demo, as the end-to-end test (`live.test.ts`) and the demo benchmark
 * (`bench/demo.bench.ts`) start the real `settle` process on it.
 */

/** Nothing real: the embedded database, no keys, no Stripe, no Twilio, no mail server. */
export const FRESH_ENV: Record<string, string | undefined> = {
  DATABASE_URL: undefined, SETTLE_ENCRYPTION_KEYS: undefined, SETTLE_BLIND_INDEX_KEY: undefined, SETTLE_PAY_LINK_KEYS: undefined,
  STRIPE_SECRET_KEY: undefined, STRIPE_WEBHOOK_SECRET: undefined, SETTLE_SMTP_URL: undefined,
  TWILIO_ACCOUNT_SID: undefined, TWILIO_AUTH_TOKEN: undefined, TWILIO_MESSAGING_SERVICE_SID: undefined,
  SETTLE_DEMO: 'auto', SETTLE_LOG_LEVEL: 'warn',
};

/**
 * The staff key in the line `settle start` prints once the demo is ready (its dashboard populated), or undefined
 * while that line has not come.
 */
export function demoStaffKey(output: string): string | undefined {
  return /DEMO ready: open \S+ and sign in with this staff key[^\n]*\n\s*\n\s*(settle_\S+)/.exec(output)?.[1];
}
