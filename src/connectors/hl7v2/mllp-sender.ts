/**
 * The MLLP sender for write-back: one persistent connection to the peer, re-established with exponential
 * backoff and jitter whenever it drops, and send-and-wait with one message outstanding at a time (original
 * mode), the ACK matched to its message by MSA-2.
 *
 * Every send ends in exactly one outcome, which tells the caller whether it may simply send again:
 * - `delivered`: the peer answered AA (or CA): it has the message.
 * - `failed`: the peer answered AE/AR (CE/CR): it refused the message; `reason` carries its MSA-3 / ERR text.
 * - `unsent`: the message was never written (no connection before the deadline, or the sender is closed):
 *   sending again cannot duplicate it.
 * - `unknown`: the message was written but no matching ACK came before the deadline or the connection
 *   dropped first: the peer may or may not have it. The sender never re-sends by itself; the caller decides
 *   (re-sending the same MSH-10 lets a peer that de-duplicates by control id recognise it).
 */
import net from 'node:net';
import tls from 'node:tls';
import { Hl7Message } from '@medplum/core';
import type { Logger } from '../../config/logger.ts';
import { charsetOf, decodeEscapes, decodeHl7Bytes, nodeEncoding, readMsh18, type Hl7Charset } from './hl7-text.ts';
import { delimitersOf } from './ack.ts';
import { encodeFrame, MllpFramer } from './mllp-framer.ts';

/** How a send ended. */
export type SendOutcome =
  | { status: 'delivered'; controlId: string; ackCode: string; ack: string; durationMs: number }
  | { status: 'failed'; controlId: string; ackCode: string; reason: string; errorCode?: number; ack: string; durationMs: number }
  | { status: 'unsent'; controlId: string; reason: string; durationMs: number }
  | { status: 'unknown'; controlId: string; reason: string; durationMs: number };

/** Reconnect delays: `initialMs × factor^attempt`, capped at `maxMs`, then jittered to between half and all of it. */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  factor?: number;
}

/** Options of {@link MllpSender}. */
export interface MllpSenderOptions {
  host: string;
  port: number;
  logger: Logger;
  /** TLS options (servername, ca, cert, key…) to connect over TLS; plain TCP when absent. */
  tls?: tls.ConnectionOptions;
  /** Default time from `send` to the ACK (default 30 s). */
  ackTimeoutMs?: number;
  /** Time one connection attempt may take (default 5 s). */
  connectTimeoutMs?: number;
  backoff?: BackoffOptions;
  /** Largest ACK accepted (default 1 MiB); a larger one drops the connection. */
  maxAckBytes?: number;
  /** Random numbers in [0, 1) for jitter (tests pass a fixed one). */
  random?: () => number;
  /** Milliseconds now (tests may pass a fake; default performance.now). */
  now?: () => number;
}

/** What the sender is doing. */
export type SenderState = 'idle' | 'connecting' | 'connected' | 'backoff' | 'closed';

/** The reconnect delay after `attempt` failed attempts (0-based). */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = options.initialMs ?? 250;
  const max = options.maxMs ?? 30_000;
  const factor = options.factor ?? 2;
  const base = Math.min(max, initial * factor ** Math.min(attempt, 60));
  return Math.round(base / 2 + random() * (base / 2));
}

/** MSH-10 and the charset of an outgoing message. */
function headerOf(text: string): { controlId: string; charset: Hl7Charset } {
  const first = text.replace(/^[\r\n ]+/, '').split(/[\r\n]/, 1)[0];
  if (!first.startsWith('MSH') || first.length < 8) throw new TypeError('not an HL7 v2 message: it must start with an MSH segment');
  const fields = first.split(first[3]);
  const controlId = (fields[9] ?? '').trim();
  if (!controlId) throw new TypeError('the message has no MSH-10 control id to match its ACK by');
  return { controlId, charset: charsetOf(readMsh18(Buffer.from(first, 'latin1')), 'UTF-8') };
}

/** The parts of an ACK the sender reads. */
export interface ParsedAck {
  code: string;
  controlId: string;
  /** MSA-3, ERR-8, ERR-3.2 and ERR-1 text (decoded), joined; '' when the peer gave none. */
  reason: string;
  errorCode?: number;
}

/** Reads MSA-1, MSA-2 and the peer's reason from an ACK. */
export function parseAck(text: string, charset: Hl7Charset = 'UTF-8'): ParsedAck | undefined {
  let ack: Hl7Message;
  try {
    ack = Hl7Message.parse(text.replace(/^[\r\n ]+/, ''));
  } catch {
    return undefined;
  }
  const msa = ack.getSegment('MSA');
  if (!msa) return undefined;
  const d = delimitersOf(ack);
  const decode = (value: string | undefined) => decodeEscapes(value ?? '', d, charset).trim();
  const reasons: string[] = [];
  const msa3 = decode(msa.getField(3)?.toString());
  if (msa3) reasons.push(msa3);
  let errorCode: number | undefined;
  for (const err of ack.getAllSegments('ERR')) {
    const code = Number(err.getField(3)?.toString().split(d.component)[0]);
    if (errorCode === undefined && Number.isInteger(code) && err.getField(3)?.toString()) errorCode = code;
    const parts = [
      decode(err.getField(3)?.toString().split(d.component)[1]),
      decode(err.getField(8)?.toString()),
      // v2.3 style ERR-1: segment ^ sequence ^ field ^ code&text
      decode(err.getField(1)?.toString().split(d.component)[3]?.split(d.subcomponent)[1]),
    ].filter((p) => p !== '');
    for (const p of parts) if (!reasons.includes(p)) reasons.push(p);
  }
  return {
    code: decode(msa.getField(1)?.toString()).toUpperCase(),
    controlId: msa.getField(2)?.toString().trim() ?? '',
    reason: reasons.join('; '),
    ...(errorCode !== undefined ? { errorCode } : {}),
  };
}

interface Waiting {
  controlId: string;
  charset: Hl7Charset;
  resolve(result: { kind: 'ack'; ack: ParsedAck; text: string } | { kind: 'lost'; reason: string }): void;
}

/** A persistent MLLP client for one peer. */
export class MllpSender {
  private readonly options: MllpSenderOptions;
  private readonly logger: Logger;
  private readonly now: () => number;
  private socket: net.Socket | undefined;
  private framer: MllpFramer | undefined;
  private current: SenderState = 'idle';
  private attempt = 0;
  private lastError = '';
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly connectedWaiters = new Set<() => void>();
  private waiting: Waiting | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  /** Connections established so far (1 after the first connect; more after reconnects). */
  connections = 0;

  constructor(options: MllpSenderOptions) {
    this.options = options;
    this.logger = options.logger;
    this.now = options.now ?? (() => performance.now());
  }

  /** What the sender is doing now. */
  get state(): SenderState {
    return this.current;
  }

  /** Connects now (sends connect on first use otherwise); reconnects by itself until closed. */
  start(): void {
    if (this.current === 'idle') this.connect();
  }

  /**
   * Sends one message and waits for its ACK. Sends made while another is outstanding wait their turn.
   * @param text - the message, segments separated by CR; MSH-10 identifies its ACK; MSH-18 its charset.
   * @param options.timeoutMs - from this call to the ACK (default: the sender's ackTimeoutMs).
   * @throws TypeError when the text is not an HL7 message with an MSH-10 (nothing is sent).
   */
  send(text: string, options: { timeoutMs?: number } = {}): Promise<SendOutcome> {
    const header = headerOf(text);
    const started = this.now();
    const deadline = started + (options.timeoutMs ?? this.options.ackTimeoutMs ?? 30_000);
    const run = this.chain.then(() => this.sendOne(text, header, started, deadline));
    this.chain = run.catch(() => {});
    return run;
  }

  /** Stops reconnecting and closes the connection; a send waiting for its ACK ends `unknown`, queued ones `unsent`. */
  async close(): Promise<void> {
    if (this.current === 'closed') return;
    this.current = 'closed';
    clearTimeout(this.reconnectTimer);
    for (const wake of this.connectedWaiters) wake();
    this.waiting?.resolve({ kind: 'lost', reason: 'the sender was closed before the ACK arrived' });
    this.waiting = undefined;
    const socket = this.socket;
    this.socket = undefined;
    if (socket && !socket.destroyed) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          socket.destroy();
          resolve();
        }, 1000);
        socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.end();
      });
    }
  }

  private async sendOne(text: string, header: { controlId: string; charset: Hl7Charset }, started: number, deadline: number): Promise<SendOutcome> {
    const { controlId, charset } = header;
    const elapsed = () => Math.round(this.now() - started);
    if (this.current === 'closed') return { status: 'unsent', controlId, reason: 'the sender is closed', durationMs: elapsed() };
    if (this.current === 'idle') this.connect();
    const socket = await this.connectedSocket(deadline);
    if (!socket) {
      const reason = (this.current as SenderState) === 'closed' ? 'the sender is closed' : `not connected to ${this.options.host}:${this.options.port}${this.lastError ? ` (${this.lastError})` : ''}`;
      return { status: 'unsent', controlId, reason, durationMs: elapsed() };
    }
    if (socket.destroyed || this.socket !== socket) {
      return { status: 'unsent', controlId, reason: 'the connection closed before the message was written', durationMs: elapsed() };
    }
    const result = await new Promise<{ kind: 'ack'; ack: ParsedAck; text: string } | { kind: 'lost'; reason: string }>((resolve) => {
      const timer = setTimeout(() => finish({ kind: 'lost', reason: `no ACK within ${Math.round(deadline - started)} ms` }), Math.max(0, deadline - this.now()));
      const finish = (value: Parameters<Waiting['resolve']>[0]) => {
        clearTimeout(timer);
        if (this.waiting === waiting) this.waiting = undefined;
        resolve(value);
      };
      const waiting: Waiting = { controlId, charset, resolve: finish };
      this.waiting = waiting;
      socket.write(encodeFrame(text, nodeEncoding(charset)));
    });
    if (result.kind === 'lost') {
      this.logger.warn('mllp send outcome unknown', { peer: `${this.options.host}:${this.options.port}`, controlId, reason: result.reason });
      return { status: 'unknown', controlId, reason: result.reason, durationMs: elapsed() };
    }
    const { ack } = result;
    if (ack.code === 'AA' || ack.code === 'CA') {
      return { status: 'delivered', controlId, ackCode: ack.code, ack: result.text, durationMs: elapsed() };
    }
    const reason = ack.reason || `the peer answered ${ack.code || 'an ACK without MSA-1'} without a reason`;
    this.logger.warn('mllp message refused', { peer: `${this.options.host}:${this.options.port}`, controlId, ackCode: ack.code, errorCode: ack.errorCode });
    return {
      status: 'failed',
      controlId,
      ackCode: ack.code,
      reason,
      ...(ack.errorCode !== undefined ? { errorCode: ack.errorCode } : {}),
      ack: result.text,
      durationMs: elapsed(),
    };
  }

  /** Resolves with the connected socket, or undefined at the deadline or on close. */
  private connectedSocket(deadline: number): Promise<net.Socket | undefined> {
    if (this.current === 'connected' && this.socket) return Promise.resolve(this.socket);
    return new Promise((resolve) => {
      const wake = () => {
        if (this.current === 'connected' && this.socket) done(this.socket);
        else if (this.current === 'closed') done(undefined);
      };
      const timer = setTimeout(() => done(undefined), Math.max(0, deadline - this.now()));
      const done = (socket: net.Socket | undefined) => {
        clearTimeout(timer);
        this.connectedWaiters.delete(wake);
        resolve(socket);
      };
      this.connectedWaiters.add(wake);
    });
  }

  private connect(): void {
    if (this.current === 'closed') return;
    this.current = 'connecting';
    const { host, port } = this.options;
    const socket = this.options.tls ? tls.connect({ host, port, ...this.options.tls }) : net.connect({ host, port });
    this.socket = socket;
    this.framer = new MllpFramer({ maxMessageBytes: this.options.maxAckBytes ?? 1024 * 1024 });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    const connectTimer = setTimeout(() => socket.destroy(new Error(`connect timed out after ${this.options.connectTimeoutMs ?? 5000} ms`)), this.options.connectTimeoutMs ?? 5000);
    socket.once(this.options.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(connectTimer);
      if (this.socket !== socket) return;
      this.current = 'connected';
      this.attempt = 0;
      this.lastError = '';
      this.connections++;
      this.logger.info('mllp sender connected', { peer: `${host}:${port}` });
      for (const wake of [...this.connectedWaiters]) wake();
    });
    socket.on('data', (chunk: Buffer) => this.onData(socket, chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      this.lastError = error.code ?? error.message;
    });
    socket.on('close', () => {
      clearTimeout(connectTimer);
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.waiting?.resolve({ kind: 'lost', reason: 'the connection closed before the ACK arrived' });
      this.waiting = undefined;
      if (this.current === 'closed') return;
      const delay = backoffDelay(this.attempt++, this.options.backoff, this.options.random);
      this.current = 'backoff';
      this.logger.info('mllp sender disconnected, reconnecting', { peer: `${host}:${port}`, attempt: this.attempt, delayMs: delay, error: this.lastError || undefined });
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    });
  }

  private onData(socket: net.Socket, chunk: Buffer): void {
    if (this.socket !== socket || !this.framer) return;
    for (const frame of this.framer.push(chunk)) {
      if (frame.kind === 'oversize') {
        this.logger.warn('mllp sender: oversize ACK, dropping the connection', { peer: `${this.options.host}:${this.options.port}`, size: frame.size });
        socket.destroy();
        return;
      }
      const waiting = this.waiting;
      let text: string;
      try {
        text = decodeHl7Bytes(frame.payload, waiting?.charset ?? 'UTF-8').text;
      } catch {
        text = frame.payload.toString(nodeEncoding(waiting?.charset ?? 'UTF-8'));
      }
      const ack = parseAck(text, waiting?.charset);
      if (!ack) {
        this.logger.warn('mllp sender: reply is not an ACK, ignored', { peer: `${this.options.host}:${this.options.port}` });
        continue;
      }
      if (!waiting || ack.controlId !== waiting.controlId) {
        // A late ACK of a message that already timed out, or a peer answering the wrong message.
        this.logger.warn('mllp sender: ACK for another message, ignored', { peer: `${this.options.host}:${this.options.port}`, controlId: ack.controlId, expected: waiting?.controlId });
        continue;
      }
      waiting.resolve({ kind: 'ack', ack, text });
    }
  }
}

/**
 * The sender of a connector's `outbound` peer (where write-backs go), not yet connected; undefined when the
 * connector has no `outbound`. Call `start()` to connect at once, `close()` on shutdown.
 */
export function outboundSender(
  connector: { name: string; outbound?: { host: string; port: number } },
  logger: Logger,
  options: Omit<MllpSenderOptions, 'host' | 'port' | 'logger'> = {},
): MllpSender | undefined {
  if (!connector.outbound) return undefined;
  return new MllpSender({ ...options, host: connector.outbound.host, port: connector.outbound.port, logger: logger.child({ connector: connector.name }) });
}
