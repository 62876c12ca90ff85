/**
 * The durable MLLP listener: one per `hl7v2-mllp` connector, on Node's `net`.
 *
 * Per connection, frames are decoded by {@link MllpFramer} and handled one at a time, in arrival order:
 * decode (MSH-18) → parse (`Hl7Message`) → validate → commit to `hl7_messages` → only then AA. What is not
 * HL7, or not an accepted type, gets AR; HL7 that is invalid gets AE with an ERR segment. Nothing is ever
 * acknowledged with AA before its row is committed; a re-sent control id is acknowledged again and stored once.
 * Logs carry the connector, the control id and the message type, never message content.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { Hl7Message } from '@medplum/core';
import type pg from 'pg';
import type { Logger } from '../../config/logger.ts';
import type { Clock } from '../../domain/clock.ts';
import type { Database, Queryable } from '../../store/database.ts';
import { Hl7MessageRepository } from '../../store/hl7-messages.ts';
import { buildAck, Hl7ErrorCode, mshField, type AckCode, type AckError } from './ack.ts';
import { decodeHl7Bytes, Hl7TextError, nodeEncoding, readMsh18, charsetOf, type Hl7Charset } from './hl7-text.ts';
import { CommitBatcher, type CommitBatcherStats } from './commit-batcher.ts';
import { encodeFrame, MllpFramer, type FrameResult } from './mllp-framer.ts';

/** The `hl7v2-mllp` connector file, as `connectors/connector.schema.json` describes it. */
export interface Hl7v2MllpConnector {
  name: string;
  transport: 'hl7v2-mllp';
  practice?: string;
  listen: { host: string; port: number };
  tls?: { certFile: string; keyFile: string; caFile?: string };
  acceptedMessageTypes: string[];
  charset: Hl7Charset;
  outbound?: { host: string; port: number };
  retentionDays: number;
}

/**
 * Narrows a connector file's parsed data (already validated against the schema) to an MLLP connector.
 * @throws Error when the connector is not an `hl7v2-mllp` one.
 */
export function asHl7v2MllpConnector(data: Record<string, unknown>): Hl7v2MllpConnector {
  if (data.transport !== 'hl7v2-mllp') throw new Error(`connector ${String(data.name)} is not an hl7v2-mllp connector`);
  return data as unknown as Hl7v2MllpConnector;
}

/** Options of {@link startMllpListener}. */
export interface MllpListenerOptions {
  /**
   * Where messages are committed: the database (each insert commits on its own on its pool), or a Queryable that
   * commits each statement. On a PostgreSQL server the listener's statements are prepared once per connection.
   */
  db: Pick<Database, 'kind' | 'pool'> | Queryable;
  /** The practice every message of this connector belongs to (resolve `connector.practice` by slug). */
  practiceId: string;
  connector: Hl7v2MllpConnector;
  logger: Logger;
  clock: Clock;
  /** Largest message accepted, in bytes (default 1 MiB); a larger one gets AR and the connection is closed. */
  maxMessageBytes?: number;
  /** A connection idle (nothing received, nothing in progress) this long is closed (default 5 minutes). */
  idleTimeoutMs?: number;
  /** Messages queued on one connection before reading from it pauses (default 32). */
  maxQueuedPerConnection?: number;
  /** Most messages committed in one statement (default 100). Batches form only while commits are in flight. */
  maxBatch?: number;
  /**
   * Most batches committing at once, each on its own pooled connection (default 2): when a full batch
   * (`maxBatch`) is waiting, it is inserted while the previous one is being flushed to disk. Keep it below the
   * pool size.
   */
  maxInFlight?: number;
  /**
   * Longest a batch waits for the senders of the batch just committed to send again (default 1 ms), so senders
   * that wait for each ACK share one commit instead of alternating between two; 0 never waits.
   */
  gatherMs?: number;
  /** Most connections open at once (default 100); a connection beyond it is closed at once, before any data. */
  maxConnections?: number;
  /** Told after a new (not duplicate) message is committed, e.g. to start processing it without waiting. */
  onStored?: () => void;
}

/** A running listener. */
export interface MllpListener {
  /** The bound port (useful when the connector says 0). */
  readonly port: number;
  readonly host: string;
  /** What the listener's group commit did so far: batches, messages, most batches committing at once. */
  commitStats(): CommitBatcherStats;
  /** Stops accepting, lets each connection finish the message it is committing (and send its ACK), then closes every socket. */
  close(): Promise<void>;
}

type WorkItem = { kind: 'message'; payload: Buffer } | { kind: 'oversize'; head: Buffer; size: number };

/** What handling one message decided. */
interface Outcome {
  code: AckCode;
  message?: Hl7Message;
  controlId?: string;
  error?: AckError;
  charset: Hl7Charset;
  /** Close the connection after this ACK. */
  close?: boolean;
}

/**
 * Starts the MLLP listener of one connector.
 * @returns once the server is listening.
 * With `connector.tls`, the listener speaks MLLP over TLS with that certificate and key; with `tls.caFile` it
 * also requires client certificates signed by that CA.
 * @throws Error when a TLS file cannot be read or used, or the address cannot be bound.
 */
export async function startMllpListener(options: MllpListenerOptions): Promise<MllpListener> {
  const { connector, logger, clock, practiceId } = options;
  const secureContext = connector.tls ? tlsOptions(connector) : undefined;
  const queryable: Queryable = !('pool' in options.db) ? options.db : options.db.kind === 'server' ? preparedOnEachConnection(options.db.pool) : options.db.pool;
  const repository = new Hl7MessageRepository(queryable);
  const maxMessageBytes = options.maxMessageBytes ?? 1024 * 1024;
  const idleTimeoutMs = options.idleTimeoutMs ?? 5 * 60_000;
  const maxQueued = options.maxQueuedPerConnection ?? 32;
  const accepted = new Set(connector.acceptedMessageTypes);
  const batcher = new CommitBatcher(repository, { maxBatch: options.maxBatch ?? 100, maxInFlight: options.maxInFlight ?? 2, gatherMs: options.gatherMs ?? 1 });
  const connections = new Set<Connection>();
  let closing = false;

  /** Decides one message's ACK; `sender` (its connection) keeps that connection's commits in order. */
  async function handle(item: WorkItem, sender: object): Promise<Outcome> {
    if (item.kind === 'oversize') {
      const charset = safeCharset(item.head, connector.charset);
      return {
        code: 'AR',
        controlId: controlIdFromHead(item.head, charset),
        charset,
        error: { code: Hl7ErrorCode.applicationInternalError, text: `message larger than ${maxMessageBytes} bytes` },
        close: true,
      };
    }
    let text: string;
    let charset: Hl7Charset;
    try {
      ({ text, charset } = decodeHl7Bytes(item.payload, connector.charset));
    } catch (error) {
      if (!(error instanceof Hl7TextError)) throw error;
      const fallback = safeCharset(item.payload, connector.charset);
      const looksHl7 = item.payload.toString('latin1', 0, 3) === 'MSH';
      return {
        code: looksHl7 ? 'AE' : 'AR',
        controlId: controlIdFromHead(item.payload, fallback),
        charset: fallback,
        error: { code: Hl7ErrorCode.dataTypeError, location: { segment: 'MSH', field: 18 }, text: error.message },
      };
    }
    const trimmed = text.replace(/^[\r\n ]+/, '');
    // Only MSH decides the ACK and the stored columns: the other segments are parsed when the message is processed.
    let message: Hl7Message;
    try {
      if (!/^MSH[^\r\n]{5}/.test(trimmed)) throw new Error('no MSH');
      message = Hl7Message.parse(trimmed.slice(0, trimmed.search(/[\r\n]|$/)));
      if (!message.header || message.header.name !== 'MSH') throw new Error('no MSH');
    } catch {
      return { code: 'AR', charset, error: { code: Hl7ErrorCode.segmentSequenceError, location: { segment: 'MSH' }, text: 'not an HL7 v2 message (no MSH segment)' } };
    }
    const type = message.header.getComponent(9, 1).trim();
    const trigger = message.header.getComponent(9, 2).trim();
    const controlId = mshField(message, 10).trim();
    if (!type || !trigger) {
      return { code: 'AE', message, charset, error: { code: Hl7ErrorCode.requiredFieldMissing, location: { segment: 'MSH', field: 9 }, text: 'MSH-9 message type and trigger event are required' } };
    }
    const messageType = `${type}^${trigger}`;
    if (!accepted.has(messageType)) {
      return { code: 'AR', message, charset, error: { code: Hl7ErrorCode.unsupportedMessageType, location: { segment: 'MSH', field: 9 }, text: `${messageType} is not accepted by this connector` } };
    }
    if (!controlId) {
      return { code: 'AE', message, charset, error: { code: Hl7ErrorCode.requiredFieldMissing, location: { segment: 'MSH', field: 10 }, text: 'MSH-10 message control id is required' } };
    }
    if (controlId.length > 199) {
      return { code: 'AE', message, charset, error: { code: Hl7ErrorCode.dataTypeError, location: { segment: 'MSH', field: 10 }, text: 'MSH-10 is longer than 199 characters' } };
    }
    try {
      const stored = await batcher.store({
        practiceId,
        connector: connector.name,
        controlId,
        messageType,
        sendingApplication: mshField(message, 3),
        sendingFacility: mshField(message, 4),
        receivedAt: clock.now(),
        raw: trimmed,
        rawBytesCharset: charset,
      }, sender);
      logger.info('hl7 message stored', { connector: connector.name, controlId, messageType, messageId: stored.id, duplicate: stored.duplicate });
      if (!stored.duplicate) options.onStored?.();
      return { code: 'AA', message, charset };
    } catch (error) {
      logger.error('hl7 message not stored', { connector: connector.name, controlId, messageType, error: (error as Error).message });
      // AR: rejected for a reason unrelated to its content; the sender should send it again.
      return { code: 'AR', message, charset, error: { code: Hl7ErrorCode.applicationInternalError, text: 'the message could not be stored; send it again' } };
    }
  }

  class Connection {
    readonly socket: net.Socket;
    private readonly framer = new MllpFramer({ maxMessageBytes });
    private readonly queue: WorkItem[] = [];
    private running: Promise<void> | undefined;
    private stopped = false;
    private paused = false;
    private peerEnded = false;

    constructor(socket: net.Socket) {
      this.socket = socket;
      socket.setNoDelay(true);
      socket.setTimeout(idleTimeoutMs, () => {
        if (this.queue.length === 0 && !this.running) {
          logger.info('mllp connection idle, closing', { connector: connector.name, idleTimeoutMs });
          socket.destroy();
        }
      });
      socket.on('data', (chunk: Buffer) => this.onData(chunk));
      // A peer may send its messages and shut down its side: it still gets its ACKs, then the socket closes.
      socket.on('end', () => {
        this.peerEnded = true;
        if (!this.running) socket.end();
      });
      socket.on('error', (error: NodeJS.ErrnoException) => {
        logger.info('mllp connection error', { connector: connector.name, code: error.code });
      });
      socket.on('close', () => {
        this.stopped = true;
        this.queue.length = 0;
        connections.delete(this);
        batcher.forget(this);
      });
    }

    private onData(chunk: Buffer): void {
      if (this.stopped) return;
      const results: FrameResult[] = this.framer.push(chunk);
      for (const result of results) {
        this.queue.push(result.kind === 'message' ? { kind: 'message', payload: result.payload } : { kind: 'oversize', head: result.head, size: result.size });
        if (result.kind === 'oversize') {
          // Nothing after an oversize frame is read: it gets AR and the connection closes.
          this.stopReading();
          break;
        }
      }
      if (this.queue.length >= maxQueued) this.pause();
      if (!this.running && this.queue.length > 0) this.running = this.drain();
    }

    private pause(): void {
      if (!this.paused) {
        this.paused = true;
        this.socket.pause();
      }
    }

    private resume(): void {
      if (this.paused && !this.stopped && !closing) {
        this.paused = false;
        this.socket.resume();
      }
    }

    private stopReading(): void {
      this.stopped = true;
      this.socket.pause();
    }

    private async drain(): Promise<void> {
      try {
        while (this.queue.length > 0) {
          // Every queued message is handled at once (their commits share a batch); ACKs still go out in order,
          // each only once its own commit has returned.
          const pending = this.queue.splice(0, this.queue.length).map((item) =>
            handle(item, this).catch((error: unknown): Outcome => {
              logger.error('hl7 message handling failed', { connector: connector.name, error: (error as Error).message });
              return { code: 'AR', charset: connector.charset, error: { code: Hl7ErrorCode.applicationInternalError } };
            }),
          );
          this.resume();
          for (const next of pending) {
            const outcome = await next;
            if (outcome.code !== 'AA') {
              logger.warn('hl7 message not accepted', {
                connector: connector.name,
                ack: outcome.code,
                controlId: outcome.message ? mshField(outcome.message, 10) : outcome.controlId,
                errorCode: outcome.error?.code,
              });
            }
            if (this.socket.destroyed) continue; // its commit still completes; the sender will re-send it
            const ack = buildAck({ code: outcome.code, message: outcome.message, controlId: outcome.controlId, error: outcome.error, now: clock.now() });
            const flushed = this.socket.write(encodeFrame(ack, nodeEncoding(outcome.charset)));
            if (outcome.close) {
              this.socket.end();
              return;
            }
            if (!flushed && !this.socket.destroyed) {
              // The peer is not reading its ACKs: stop reading its messages until it does.
              this.pause();
              await new Promise<void>((resolve) => {
                const done = () => {
                  this.socket.off('drain', done);
                  this.socket.off('close', done);
                  resolve();
                };
                this.socket.on('drain', done);
                this.socket.on('close', done);
              });
              this.resume();
            }
          }
          if (closing) return;
        }
      } catch (error) {
        // Nothing here should throw; if it does, this connection ends (un-acknowledged messages get re-sent).
        logger.error('mllp connection failed', { connector: connector.name, error: (error as Error).message });
        this.socket.destroy();
      } finally {
        this.running = undefined;
        if (this.peerEnded && !this.socket.destroyed) this.socket.end();
      }
    }

    /** Stops reading, waits for the message being committed (and its ACK), then closes. */
    async shutdown(): Promise<void> {
      this.stopReading();
      this.queue.length = 0;
      await this.running;
      if (this.socket.closed) return;
      this.socket.end();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.socket.destroy();
          resolve();
        }, 2000);
        this.socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  const accept = (socket: net.Socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    connections.add(new Connection(socket));
  };
  const server: net.Server = secureContext
    ? tls.createServer({ ...secureContext, allowHalfOpen: true }, accept)
    : net.createServer({ allowHalfOpen: true }, accept);
  server.maxConnections = options.maxConnections ?? 100;
  server.on('drop', (data) => logger.warn('mllp connection refused: too many connections', { connector: connector.name, maxConnections: server.maxConnections, remoteAddress: data?.remoteAddress }));
  if (secureContext) {
    // A handshake that fails (plain TCP, an untrusted client certificate) never becomes a connection.
    server.on('tlsClientError', (error: NodeJS.ErrnoException) => logger.warn('mllp tls handshake failed', { connector: connector.name, code: error.code }));
  }
  server.on('error', (error) => logger.error('mllp server error', { connector: connector.name, error: error.message }));
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => reject(new Error(`connector ${connector.name}: cannot listen on ${connector.listen.host}:${connector.listen.port}: ${error.message}`));
    server.once('error', onError);
    server.listen(connector.listen.port, connector.listen.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;
  logger.info('mllp listener started', { connector: connector.name, host: address.address, port: address.port, tls: Boolean(secureContext) });

  let closed: Promise<void> | undefined;
  return {
    port: address.port,
    host: address.address,
    commitStats: () => batcher.stats(),
    close() {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.all([...connections].map((c) => c.shutdown()));
        await stopped;
        logger.info('mllp listener stopped', { connector: connector.name });
      })();
      return closed;
    },
  };
}

/**
 * The TLS server options of a connector: its certificate and key, and with `caFile`, client certificates required.
 * @throws Error naming the file that cannot be read, or when the key does not fit the certificate.
 */
function tlsOptions(connector: Hl7v2MllpConnector): tls.TlsOptions {
  const config = connector.tls!;
  const read = (what: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new Error(`connector ${connector.name}: cannot read the TLS ${what} ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  };
  const options: tls.TlsOptions = { cert: read('certificate', config.certFile), key: read('key', config.keyFile), minVersion: 'TLSv1.2' };
  if (config.caFile) Object.assign(options, { ca: read('CA', config.caFile), requestCert: true, rejectUnauthorized: true });
  try {
    tls.createSecureContext(options);
  } catch (error) {
    throw new Error(`connector ${connector.name}: the TLS certificate and key cannot be used: ${(error as Error).message}`);
  }
  return options;
}

/**
 * A pool whose statements are prepared once on each of its connections (pg named statements), so the PostgreSQL
 * server neither parses nor plans the insert of every batch again. Only for a server: the embedded database
 * already prepares every statement once, and its connections share one session, where two connections
 * preparing the same name would collide.
 */
function preparedOnEachConnection(pool: pg.Pool): Queryable {
  const names = new Map<string, string>();
  return {
    query<R extends pg.QueryResultRow>(text: string, values?: unknown[]) {
      let name = names.get(text);
      if (name === undefined) names.set(text, (name = `settle_mllp_${names.size + 1}`));
      return pool.query<R>({ name, text, values });
    },
  };
}

/** The charset of a payload by MSH-18, or the connector's when it declares none or an unsupported one. */
function safeCharset(bytes: Buffer, fallback: Hl7Charset): Hl7Charset {
  try {
    return charsetOf(readMsh18(bytes), fallback);
  } catch {
    return fallback;
  }
}

/** MSH-10 read from the first line of a payload (for ACKs of what could not be parsed), if any. */
function controlIdFromHead(bytes: Buffer, charset: Hl7Charset): string | undefined {
  const head = bytes.subarray(0, 4096).toString(nodeEncoding(charset)).replace(/^[\r\n ]+/, '');
  if (!head.startsWith('MSH') || head.length < 4) return undefined;
  const line = head.split(/[\r\n]/, 1)[0];
  const fields = line.split(head[3]);
  // fields[k] = MSH-(k+1); MSH-10 is fields[9]. A truncated last field is not trusted.
  if (fields.length <= 10) return undefined;
  return fields[9] || undefined;
}
