import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../../../src/domain/clock.ts';
import { FhirError } from '../../../src/connectors/fhir/errors.ts';
import { FhirClient } from '../../../src/connectors/fhir/fhir-client.ts';
import { createTokenProvider, signClientAssertion, type AuthConfig } from '../../../src/connectors/fhir/smart-auth.ts';
import { startSandboxEhr, type SandboxEhr } from '../../../src/sandbox-ehr/server.ts';
import { seedPractice } from '../../../src/sandbox-ehr/seed.ts';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const otherRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const pem = (k: KeyObject) => k.export({ type: 'spki', format: 'pem' }).toString();
const SCOPE = 'system/Patient.rs system/Account.rs system/Invoice.rs';

async function tokenRequest(tokenUrl: string, assertion: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      scope: SCOPE,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
    }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('SMART Backend Services and other auth methods against the sandbox EHR', () => {
  let ehr: SandboxEhr;
  let patientId: string;

  before(async () => {
    ehr = await startSandboxEhr({
      clients: [
        { clientId: 'settle-rs', publicKeyPem: pem(rsa.publicKey), kid: 'rs-1' },
        { clientId: 'settle-es', jwk: ec.publicKey.export({ format: 'jwk' }), kid: 'es-1' },
        { clientId: 'settle-secret', clientSecret: 's3cret:with/odd chars' },
      ],
      bearerTokens: ['static-token-from-env'],
    });
    patientId = (await seedPractice(ehr.repo, { patients: 3, seed: 7 })).ids.Patient[0]!;
  });
  after(() => ehr.close());

  const smart = (over: Partial<Extract<AuthConfig, { method: 'smart-backend' }>> = {}): AuthConfig => ({
    method: 'smart-backend',
    tokenUrl: ehr.tokenUrl,
    clientId: 'settle-rs',
    privateKey: rsa.privateKey,
    kid: 'rs-1',
    alg: 'RS384',
    scope: SCOPE,
    ...over,
  });

  it('gets a token with an RS384 assertion, caches it, and reads with it', async () => {
    const before = ehr.stats.tokenRequests;
    const auth = createTokenProvider(smart());
    const client = new FhirClient({ baseUrl: ehr.baseUrl, auth });
    const patient = await client.read('Patient', patientId);
    assert.equal(patient.id, patientId);
    await client.read('Patient', patientId);
    assert.equal(ehr.stats.tokenRequests - before, 1, 'the token is cached between reads');
  });

  it('gets a token with an ES384 assertion (key registered as a JWK, private key given as PEM)', async () => {
    const auth = createTokenProvider(
      smart({ clientId: 'settle-es', kid: 'es-1', alg: 'ES384', privateKey: ec.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }),
    );
    const header = await auth.authorization();
    assert.match(header ?? '', /^Bearer \S+$/);
    const client = new FhirClient({ baseUrl: ehr.baseUrl, auth });
    assert.equal((await client.read('Patient', patientId)).id, patientId);
  });

  it('sends a well-formed assertion: kid, iss = sub, aud, exp ≤ 5 min, unique jti, scope', async () => {
    const bodies: URLSearchParams[] = [];
    const spy: typeof fetch = async (input, init) => {
      bodies.push(new URLSearchParams(String(init?.body)));
      return fetch(input, init);
    };
    const clock = new ManualClock(new Date());
    const auth = createTokenProvider(smart(), { fetch: spy, clock });
    await auth.authorization();
    auth.invalidate();
    await auth.authorization();
    assert.equal(bodies.length, 2);
    const claims = bodies.map((b) => {
      assert.equal(b.get('scope'), SCOPE);
      assert.equal(b.get('grant_type'), 'client_credentials');
      const [h, p] = b.get('client_assertion')!.split('.');
      const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as Record<string, unknown>;
      assert.deepEqual(header, { alg: 'RS384', kid: 'rs-1', typ: 'JWT' });
      return JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, number | string>;
    });
    for (const c of claims) {
      assert.equal(c.iss, 'settle-rs');
      assert.equal(c.sub, 'settle-rs');
      assert.equal(c.aud, ehr.tokenUrl);
      assert.ok((c.exp as number) - Math.floor(clock.now().getTime() / 1000) <= 300);
    }
    assert.notEqual(claims[0]!.jti, claims[1]!.jti);
  });

  it('refreshes the cached token shortly before expires_in', async () => {
    const clock = new ManualClock(new Date());
    const before = ehr.stats.tokenRequests;
    // A short assertion lifetime keeps the assertion's exp acceptable to the sandbox, whose clock does not move.
    const auth = createTokenProvider(smart({ assertionLifetimeSeconds: 20 }), { clock, refreshBeforeSeconds: 30 });
    const first = await auth.authorization();
    clock.advance(269_000);
    assert.equal(await auth.authorization(), first);
    clock.advance(2_000);
    assert.notEqual(await auth.authorization(), first);
    assert.equal(ehr.stats.tokenRequests - before, 2);
  });

  it('shares one token request between concurrent callers', async () => {
    const before = ehr.stats.tokenRequests;
    const auth = createTokenProvider(smart());
    const values = await Promise.all([auth.authorization(), auth.authorization(), auth.authorization()]);
    assert.equal(new Set(values).size, 1);
    assert.equal(ehr.stats.tokenRequests - before, 1);
  });

  it('rejects an assertion signed with a key other than the one registered for the kid', async () => {
    const auth = createTokenProvider(smart({ privateKey: otherRsa.privateKey }));
    await assert.rejects(auth.authorization(), (err: unknown) => {
      assert.ok(err instanceof FhirError);
      assert.equal(err.status, 400);
      assert.equal(err.outcome.resourceType, 'OperationOutcome');
      assert.match(err.message, /invalid_client: client_assertion signature does not verify/);
      return true;
    });
  });

  it('refuses a key that does not fit the algorithm at configuration time', () => {
    assert.throws(() => createTokenProvider(smart({ alg: 'ES384' })), /ES384 needs an EC P-384 private key/);
  });

  it('rejects a replayed jti, a wrong aud, an exp too far ahead and an unknown kid', async () => {
    const now = new Date();
    const base = { clientId: 'settle-rs', tokenUrl: ehr.tokenUrl, privateKey: rsa.privateKey, kid: 'rs-1', alg: 'RS384' as const, now };
    const assertion = signClientAssertion({ ...base, jti: 'fixed-jti-1' });
    const first = await tokenRequest(ehr.tokenUrl, assertion);
    assert.equal(first.status, 200);
    assert.equal(first.body.token_type, 'bearer');
    assert.equal(first.body.scope, SCOPE);
    assert.equal(typeof first.body.expires_in, 'number');
    const replay = await tokenRequest(ehr.tokenUrl, assertion);
    assert.deepEqual([replay.status, replay.body.error], [400, 'invalid_client']);
    assert.match(String(replay.body.error_description), /jti/);

    const wrongAud = await tokenRequest(ehr.tokenUrl, signClientAssertion({ ...base, tokenUrl: `${ehr.baseUrl}/token` }));
    assert.deepEqual([wrongAud.status, wrongAud.body.error], [400, 'invalid_client']);

    // signClientAssertion refuses a lifetime over 5 minutes, so forge the future by signing "from" 10 minutes ahead.
    const farExp = await tokenRequest(ehr.tokenUrl, signClientAssertion({ ...base, now: new Date(now.getTime() + 600_000) }));
    assert.deepEqual([farExp.status, farExp.body.error], [400, 'invalid_client']);
    assert.match(String(farExp.body.error_description), /5 minutes/);

    const expired = await tokenRequest(ehr.tokenUrl, signClientAssertion({ ...base, now: new Date(now.getTime() - 600_000) }));
    assert.deepEqual([expired.status, expired.body.error], [400, 'invalid_client']);

    const unknownKid = await tokenRequest(ehr.tokenUrl, signClientAssertion({ ...base, kid: 'nope' }));
    assert.deepEqual([unknownKid.status, unknownKid.body.error], [400, 'invalid_client']);
    assert.throws(() => signClientAssertion({ ...base, lifetimeSeconds: 301 }), /300 seconds/);
  });

  it('answers 401 with an OperationOutcome without a bearer token', async () => {
    const res = await fetch(`${ehr.baseUrl}/Patient/${patientId}`);
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer /);
    const body = (await res.json()) as { resourceType: string };
    assert.equal(body.resourceType, 'OperationOutcome');
    const client = new FhirClient({ baseUrl: ehr.baseUrl });
    await assert.rejects(client.read('Patient', patientId), (err: unknown) => err instanceof FhirError && err.status === 401);
  });

  it('on an expired token gets 401, re-authenticates once and the read succeeds', async () => {
    const auth = createTokenProvider(smart());
    const client = new FhirClient({ baseUrl: ehr.baseUrl, auth });
    await client.read('Patient', patientId);
    const tokensBefore = ehr.stats.tokenRequests;
    ehr.expireAccessTokens();
    const requestsBefore = ehr.stats.fhirRequests.length;
    assert.equal((await client.read('Patient', patientId)).id, patientId);
    assert.equal(ehr.stats.tokenRequests - tokensBefore, 1, 'exactly one new token');
    assert.deepEqual(
      ehr.stats.fhirRequests.slice(requestsBefore).map((r) => r.status),
      [401, 200],
    );
  });

  it('re-authenticates only once: a second 401 is an error', async () => {
    const shortLived = await startSandboxEhr({
      clients: [{ clientId: 'settle-rs', publicKeyPem: pem(rsa.publicKey), kid: 'rs-1' }],
      tokenLifetimeSeconds: 0,
    });
    try {
      const auth = createTokenProvider({ ...smart(), tokenUrl: shortLived.tokenUrl } as AuthConfig);
      const client = new FhirClient({ baseUrl: shortLived.baseUrl, auth });
      await assert.rejects(client.read('Patient', 'x'), (err: unknown) => {
        assert.ok(err instanceof FhirError);
        assert.equal(err.status, 401);
        assert.equal(err.outcome.issue[0]!.code, 'expired');
        return true;
      });
      assert.equal(shortLived.stats.tokenRequests, 2);
      assert.deepEqual(
        shortLived.stats.fhirRequests.map((r) => r.status),
        [401, 401],
      );
    } finally {
      await shortLived.close();
    }
  });

  it('uses client_secret_basic and client_secret_post', async () => {
    for (const method of ['client-secret-basic', 'client-secret-post'] as const) {
      const auth = createTokenProvider({ method, tokenUrl: ehr.tokenUrl, clientId: 'settle-secret', clientSecret: 's3cret:with/odd chars', scope: SCOPE });
      const client = new FhirClient({ baseUrl: ehr.baseUrl, auth });
      assert.equal((await client.read('Patient', patientId)).id, patientId, method);
      const wrong = createTokenProvider({ method, tokenUrl: ehr.tokenUrl, clientId: 'settle-secret', clientSecret: 'wrong' });
      await assert.rejects(wrong.authorization(), (err: unknown) => err instanceof FhirError && err.status === 401 && /invalid_client/.test(err.message));
    }
  });

  it('uses a static bearer token and none', async () => {
    const bearer = new FhirClient({ baseUrl: ehr.baseUrl, auth: createTokenProvider({ method: 'bearer', token: 'static-token-from-env' }) });
    assert.equal((await bearer.read('Patient', patientId)).id, patientId);
    const wrong = new FhirClient({ baseUrl: ehr.baseUrl, auth: createTokenProvider({ method: 'bearer', token: 'nope' }) });
    await assert.rejects(wrong.read('Patient', patientId), (err: unknown) => err instanceof FhirError && err.status === 401);

    const open = await startSandboxEhr();
    try {
      const id = (await seedPractice(open.repo, { patients: 1, seed: 1 })).ids.Patient[0]!;
      const none = new FhirClient({ baseUrl: open.baseUrl, auth: createTokenProvider({ method: 'none' }) });
      assert.equal((await none.read('Patient', id)).id, id);
    } finally {
      await open.close();
    }
  });
});
