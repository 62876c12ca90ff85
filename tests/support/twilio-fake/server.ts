/**
 * Twilio fake: an express server on loopback speaking the Messages API, that the official `twilio` SDK reaches
 * through `fake.httpClient()` (a `twilio.RequestClient` that rewrites `https://api.twilio.com` to the fake).
 *
 * Every request is recorded (method, path, form parameters, the answer) and checked against Twilio's official
 * OpenAPI document (see `spec.ts`): an unknown path is a 404, a wrong or unknown parameter a 400 shaped like
 * Twilio's (`{ code: 21200-ish, message, more_info, status }`), wrong Basic credentials a 401 (code 20003).
 * A valid create answers 201 with the spec's example message adapted (fresh `SM…` sid, status `accepted`,
 * the body and Messaging Service sent).
 *
 * `refuse(to, { status, code })` makes creates to one number fail (21610 opted out, 429 rate limit…);
 * `refuseNext(n, …)` the next n creates. `postStatus(sid, status, errorCode?)` plays Twilio calling the
 * message's StatusCallback (form-encoded, signed with `X-Twilio-Signature` over the URL Twilio was given),
 * and `postInbound(url, from, body)` plays a patient's reply hitting the inbound webhook. `deliverTo` maps the
 * public URL Settle told Twilio onto the loopback address the test serves Settle at.
 */
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Request, type Response } from 'express';
import twilio from 'twilio';
import { matchTwilioOperation, twilioExample, validateTwilioRequest, type TwilioParamProblem } from './spec.ts';

/** One request as the fake saw it. */
export interface RecordedTwilioRequest {
  method: string;
  path: string;
  params: Record<string, unknown>;
  problems: TwilioParamProblem[];
  status: number;
  response: unknown;
}

/** A message the fake accepted. */
export interface FakeMessage {
  sid: string;
  to: string;
  body: string;
  messagingServiceSid: string;
  statusCallback: string | undefined;
  status: string;
}

/** A refusal the fake plays. */
export interface TwilioRefusal {
  status: number;
  code: number;
}

/** The fake's options. */
export interface TwilioFakeOptions {
  accountSid?: string;
  authToken?: string;
  /** Maps a callback URL Settle gave (its public URL) to where the test serves Settle. Default: unchanged. */
  deliverTo?: (publicUrl: string) => string;
}

/** A running fake. */
export interface TwilioFake {
  readonly url: string;
  readonly accountSid: string;
  readonly authToken: string;
  readonly messagingServiceSid: string;
  readonly requests: RecordedTwilioRequest[];
  readonly messages: FakeMessage[];
  /** A RequestClient for `twilio(sid, token, { httpClient })` that talks to this fake. */
  httpClient(): InstanceType<typeof twilio.RequestClient>;
  refuse(to: string, refusal: TwilioRefusal): void;
  refuseNext(count: number, refusal: TwilioRefusal): void;
  /** Posts a signed status callback for a message. @returns Settle's HTTP status. */
  postStatus(sid: string, status: string, errorCode?: string, options?: { tamper?: boolean }): Promise<{ status: number; body: string }>;
  /** Posts a signed inbound text to `url` (the public inbound webhook URL). @returns Settle's answer. */
  postInbound(url: string, from: string, body: string, options?: { tamper?: boolean; messageSid?: string }): Promise<{ status: number; body: string }>;
  set deliverTo(map: (publicUrl: string) => string);
  close(): Promise<void>;
}

/** A `twilio.RequestClient` that sends what the SDK addresses to api.twilio.com to a fake at `url` instead. */
export function fakeHttpClient(url: string): InstanceType<typeof twilio.RequestClient> {
  class FakeRequestClient extends twilio.RequestClient {
    override request<T>(opts: Parameters<InstanceType<typeof twilio.RequestClient>['request']>[0] & { data?: T }) {
      return super.request({ ...opts, uri: opts.uri.replace(/^https:\/\/api\.twilio\.com/, url) });
    }
  }
  return new FakeRequestClient({ keepAlive: true });
}

const hex = (n: number) => randomBytes(n).toString('hex');
const rfc2822 = (d: Date) => d.toUTCString().replace('GMT', '+0000');

/** Starts a fake on 127.0.0.1. */
export async function startTwilioFake(options: TwilioFakeOptions = {}): Promise<TwilioFake> {
  const accountSid = options.accountSid ?? `AC${hex(16)}`;
  const authToken = options.authToken ?? hex(16);
  const messagingServiceSid = `MG${hex(16)}`;
  const requests: RecordedTwilioRequest[] = [];
  const messages: FakeMessage[] = [];
  const refusals = new Map<string, TwilioRefusal>();
  const nextRefusals: TwilioRefusal[] = [];
  let deliverTo = options.deliverTo ?? ((u: string) => u);

  const app = express();
  app.use(express.text({ type: '*/*', limit: '1mb' }));
  app.all(/.*/, (req: Request, res: Response) => {
    const form = new URLSearchParams(typeof req.body === 'string' ? req.body : '');
    const answer = (status: number, body: unknown, record: Omit<RecordedTwilioRequest, 'status' | 'response'>) => {
      requests.push({ ...record, status, response: body });
      res.status(status).json(body);
    };
    const op = matchTwilioOperation(req.method, req.path);
    const base = { method: req.method, path: req.path, params: Object.fromEntries(form), problems: [] as TwilioParamProblem[] };
    if (!op) return answer(404, { code: 20404, message: 'The requested resource was not found', more_info: 'https://www.twilio.com/docs/errors/20404', status: 404 }, base);
    const auth = req.get('authorization') ?? '';
    const [user, pass] = Buffer.from(auth.replace(/^Basic /, ''), 'base64').toString('utf8').split(':');
    if (user !== accountSid || pass !== authToken || op.pathParams.AccountSid !== accountSid) {
      return answer(401, { code: 20003, message: 'Authenticate', more_info: 'https://www.twilio.com/docs/errors/20003', status: 401 }, base);
    }
    if (req.method === 'POST' && !req.is('application/x-www-form-urlencoded')) {
      return answer(400, { code: 21200, message: 'Content-Type must be application/x-www-form-urlencoded', status: 400 }, base);
    }
    const { params, problems } = validateTwilioRequest(op, form);
    const record = { ...base, params, problems };
    if (problems.length > 0) {
      return answer(400, { code: 21200, message: problems.map((p) => p.message).join('; '), more_info: 'https://www.twilio.com/docs/errors/21200', status: 400 }, record);
    }
    if (op.template !== '/2010-04-01/Accounts/{AccountSid}/Messages.json' || req.method !== 'POST') {
      return answer(501, { code: 20501, message: `the fake does not implement ${op.key}`, status: 501 }, record);
    }
    const to = String(params.To);
    const refusal = nextRefusals.shift() ?? refusals.get(to);
    if (refusal) {
      return answer(refusal.status, { code: refusal.code, message: `Refused (${refusal.code}) for 'To' ${to}`, more_info: `https://www.twilio.com/docs/errors/${refusal.code}`, status: refusal.status }, record);
    }
    const sid = `SM${hex(16)}`;
    const now = new Date();
    const message = twilioExample(op, 201);
    Object.assign(message, {
      sid, account_sid: accountSid, to, from: null, body: String(params.Body ?? ''), status: 'accepted', messaging_service_sid: params.MessagingServiceSid ?? null,
      date_created: rfc2822(now), date_updated: rfc2822(now), date_sent: null, num_segments: '0', error_code: null, error_message: null, price: null,
      uri: `/2010-04-01/Accounts/${accountSid}/Messages/${sid}.json`,
      subresource_uris: { media: `/2010-04-01/Accounts/${accountSid}/Messages/${sid}/Media.json` },
    });
    messages.push({
      sid, to, body: String(params.Body ?? ''), messagingServiceSid: String(params.MessagingServiceSid ?? ''),
      statusCallback: params.StatusCallback === undefined ? undefined : String(params.StatusCallback), status: 'accepted',
    });
    return answer(201, message, record);
  });

  const server: Server = app.listen(0, '127.0.0.1');
  server.keepAliveTimeout = 30_000;
  await new Promise((resolve) => server.once('listening', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const post = async (publicUrl: string, params: Record<string, string>, tamper: boolean) => {
    const signature = twilio.getExpectedTwilioSignature(authToken, publicUrl, params);
    const sent = tamper ? { ...params, Body: `${params.Body ?? ''} (tampered)`, MessageStatus: params.MessageStatus ? 'delivered' : '' } : params;
    const response = await fetch(deliverTo(publicUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature },
      body: new URLSearchParams(Object.fromEntries(Object.entries(sent).filter(([, v]) => v !== ''))).toString(),
    });
    return { status: response.status, body: await response.text() };
  };

  return {
    url, accountSid, authToken, messagingServiceSid, requests, messages,
    httpClient: () => fakeHttpClient(url),
    refuse: (to, refusal) => void refusals.set(to, refusal),
    refuseNext: (count, refusal) => { for (let i = 0; i < count; i++) nextRefusals.push(refusal); },
    async postStatus(sid, status, errorCode, opts = {}) {
      const message = messages.find((m) => m.sid === sid);
      if (!message?.statusCallback) throw new Error(`message ${sid} has no StatusCallback`);
      message.status = status;
      const params: Record<string, string> = {
        AccountSid: accountSid, ApiVersion: '2010-04-01', MessageSid: sid, SmsSid: sid, MessageStatus: status, SmsStatus: status,
        MessagingServiceSid: message.messagingServiceSid, To: message.to, From: '+15005550006', ...(errorCode ? { ErrorCode: errorCode } : {}),
      };
      return post(message.statusCallback, params, opts.tamper ?? false);
    },
    async postInbound(publicUrl, from, body, opts = {}) {
      const sid = opts.messageSid ?? `SM${hex(16)}`;
      const params: Record<string, string> = {
        AccountSid: accountSid, ApiVersion: '2010-04-01', MessageSid: sid, SmsMessageSid: sid, SmsSid: sid, SmsStatus: 'received',
        MessagingServiceSid: messagingServiceSid, From: from, To: '+15005550006', Body: body, NumMedia: '0', NumSegments: '1',
      };
      return post(publicUrl, params, opts.tamper ?? false);
    },
    set deliverTo(map: (publicUrl: string) => string) {
      deliverTo = map;
    },
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
