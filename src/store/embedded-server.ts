/**
 * Serves an embedded PGlite database over the PostgreSQL wire protocol on loopback, so that `pg` pools
 * and Agenda share it exactly as they share a PostgreSQL server.
 *
 * PGlite is one backend session. `@electric-sql/pglite-socket` frames the protocol for each connection,
 * but its own scheduler only keeps a connection in charge while a transaction is open: between a Parse
 * and its Sync (`pg` sends every parameterised query that way) another connection's messages can run,
 * and the unnamed statement or portal of the first is lost ("portal "" does not exist"). The
 * {@link SessionScheduler} here gives one connection the session from its first message until the
 * session is idle again: after a Sync or simple Query, outside a transaction.
 *
 * On PGlite parsing and planning a statement cost as much as running it, and every `pg` query with parameters
 * is sent as an unnamed statement, parsed and planned afresh each time. Since every connection shares the one
 * session, the {@link StatementCache} turns each statement text into a named prepared statement the first time
 * it is seen and lets every later Parse of that text, from any connection, reuse it (see its comment).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { PGlite } from '@electric-sql/pglite';
import { openPglite } from './pglite-template.ts';
import { PGLiteSocketHandler, type PGLiteSocketHandlerOptions } from '@electric-sql/pglite-socket';

interface QueuedMessage {
  handlerId: number;
  message: Uint8Array;
  onData: (data: Uint8Array) => void;
  resolve: (bytes: number) => void;
  reject: (error: Error) => void;
}

/** Frontend message types that end a protocol exchange (the backend answers ReadyForQuery). */
const SYNC = 0x53; // 'S'
const QUERY = 0x51; // 'Q'
/** Frontend messages the statement cache looks into. */
const PARSE = 0x50; // 'P'
const BIND = 0x42; // 'B'
const DESCRIBE = 0x44; // 'D'
const CLOSE = 0x43; // 'C'
/** The startup message has no type byte; its second int32 is the protocol version 3.0. */
const PROTOCOL_3 = 196608;
/** The backend's ParseComplete, sent for a Parse answered from the cache. */
const PARSE_COMPLETE = new Uint8Array([0x31, 0, 0, 0, 4]);
/** Prepared statements kept at once (least recently used closed first), and the longest text cached. */
const CACHED_STATEMENTS = 500;
const CACHED_TEXT_BYTES = 16_384;
/** Simple queries that may change what a cached statement means or returns: every cached statement is closed first. */
const INVALIDATING_QUERY = /\b(?:create|alter|drop|deallocate|discard)\s/i;

/** A frontend message of `type` with `body` (the length is computed). */
function frame(type: number, ...body: Uint8Array[]): Uint8Array {
  const length = 4 + body.reduce((n, b) => n + b.length, 0);
  const out = new Uint8Array(1 + length);
  out[0] = type;
  new DataView(out.buffer).setInt32(1, length);
  let at = 5;
  for (const part of body) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** The index of the NUL that ends the C string starting at `from`. */
const cstringEnd = (message: Uint8Array, from: number): number => message.indexOf(0, from);
const cstring = (text: string): Uint8Array => Buffer.from(`${text}\0`, 'utf8');

/** What to run for one frontend message: the message itself (perhaps renamed), or a reply without running it. */
type Rewrite =
  | { run: Uint8Array; before: Uint8Array[]; parsed?: { key: string; name: string } }
  | { reply: Uint8Array };

/**
 * Turns the unnamed statements of `pg` into named prepared statements shared by every connection of the session.
 *
 * A Parse of the unnamed statement that opens an exchange is sent as a Parse of `settle_<n>` the first time its
 * text (and parameter types) is seen; later it is answered with ParseComplete at once. The Bind and Describe of
 * the unnamed statement that follow are pointed at that name. PostgreSQL then plans it once (a generic plan after
 * five runs, when that costs no more) instead of parsing and planning every run; its own plan cache re-plans after
 * a schema change. A simple query that creates, alters or drops anything (migrations), or deallocates, first
 * closes every cached statement, so that no statement's result type changes under it. Anything else passes
 * through untouched: named statements of the client's own, a Parse in the middle of an exchange (pipelining).
 */
class StatementCache {
  /** Statement text (with parameter types) → name, least recently used first. */
  private readonly names = new Map<string, string>();
  /** Per connection: the name its unnamed statement stands for now, and whether an exchange is open. */
  private readonly sessions = new Map<number, { unnamed: string | null; inExchange: boolean }>();
  private next = 0;
  private readonly limit: number;

  /** @param limit - statements prepared at once; the least recently used is closed to make room. */
  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`the statement cache holds at least 1 statement, not ${limit}`);
    this.limit = limit;
  }

  /**
   * What to run (or answer) for a connection's message.
   * @param endsExchange - whether the message ends an exchange (Sync, simple Query, the startup message).
   */
  rewrite(handlerId: number, message: Uint8Array, endsExchange: boolean): Rewrite {
    let session = this.sessions.get(handlerId);
    if (!session) this.sessions.set(handlerId, (session = { unnamed: null, inExchange: false }));
    const opensExchange = !session.inExchange;
    const type = message[0];
    session.inExchange = !endsExchange;
    if (type === PARSE && message[5] === 0) {
      session.unnamed = null;
      if (!opensExchange || message.length > CACHED_TEXT_BYTES) return { run: message, before: [] };
      const key = Buffer.from(message.buffer, message.byteOffset + 6, message.byteLength - 6).toString('latin1');
      const known = this.names.get(key);
      if (known !== undefined) {
        this.names.delete(key);
        this.names.set(key, known);
        session.unnamed = known;
        return { reply: PARSE_COMPLETE };
      }
      const before: Uint8Array[] = [];
      while (this.names.size >= this.limit) before.push(this.evictOldest());
      const name = `settle_${++this.next}`;
      return { run: frame(PARSE, cstring(name), message.subarray(6)), before, parsed: { key, name } };
    }
    if (type === BIND && session.unnamed !== null) {
      const portalEnd = cstringEnd(message, 5);
      if (message[portalEnd + 1] === 0) {
        return { run: frame(BIND, message.subarray(5, portalEnd + 1), cstring(session.unnamed), message.subarray(portalEnd + 2)), before: [] };
      }
    }
    if (type === DESCRIBE && session.unnamed !== null && message[5] === 0x53 && message[6] === 0) {
      return { run: frame(DESCRIBE, new Uint8Array([0x53]), cstring(session.unnamed)), before: [] };
    }
    if (type === CLOSE && message[5] === 0x53 && message[6] === 0) session.unnamed = null;
    if (type === QUERY) {
      session.unnamed = null;
      const text = Buffer.from(message.buffer, message.byteOffset + 5, message.byteLength - 5).toString('utf8');
      if (INVALIDATING_QUERY.test(text)) {
        const before: Uint8Array[] = [];
        while (this.names.size > 0) before.push(this.evictOldest());
        return { run: message, before };
      }
    }
    return { run: message, before: [] };
  }

  /** Records how a Parse sent under a new name ended: cached only when the backend answered ParseComplete. */
  parsed(handlerId: number, parsed: { key: string; name: string }, firstByte: number | undefined): void {
    if (firstByte !== PARSE_COMPLETE[0]) return;
    this.names.set(parsed.key, parsed.name);
    const session = this.sessions.get(handlerId);
    if (session) session.unnamed = parsed.name;
  }

  /** Forgets a connection that closed. */
  forget(handlerId: number): void {
    this.sessions.delete(handlerId);
  }

  /** Drops the least recently used statement: the Close message that deallocates it. */
  private evictOldest(): Uint8Array {
    const [key, name] = this.names.entries().next().value as [string, string];
    this.names.delete(key);
    for (const session of this.sessions.values()) if (session.unnamed === name) session.unnamed = null;
    return frame(CLOSE, new Uint8Array([0x53]), cstring(name));
  }
}

/** Gives the single PGlite session to one connection at a time, for whole exchanges and transactions. */
class SessionScheduler {
  private readonly queue: QueuedMessage[] = [];
  private owner: number | null = null;
  private running = false;
  private readonly db: PGlite;
  private readonly statements: StatementCache;

  constructor(db: PGlite, statements: StatementCache) {
    this.db = db;
    this.statements = statements;
  }

  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    return new Promise((resolve, reject) => {
      this.queue.push({ handlerId, message, onData, resolve, reject });
      void this.pump();
    });
  }

  getQueueLength(): number {
    return this.queue.length;
  }

  clearQueueForHandler(handlerId: number): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.queue[i].handlerId === handlerId) {
        this.queue.splice(i, 1)[0].reject(new Error('connection closed'));
      }
    }
  }

  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    this.statements.forget(handlerId);
    if (this.owner !== handlerId) return;
    if (this.db.isInTransaction()) await this.db.exec('ROLLBACK');
    this.owner = null;
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (;;) {
        const index = this.owner === null ? 0 : this.queue.findIndex((q) => q.handlerId === this.owner);
        if (index < 0 || this.queue.length === 0) return;
        const item = this.queue.splice(index, 1)[0];
        let bytes = 0;
        try {
          const rewrite = this.statements.rewrite(item.handlerId, item.message, this.endsExchange(item.message));
          if ('reply' in rewrite) {
            item.onData(rewrite.reply);
            bytes = rewrite.reply.length;
          } else {
            let firstByte: number | undefined;
            await this.db.runExclusive(async () => {
              // Closing an evicted statement answers CloseComplete, which is not the client's to read.
              for (const close of rewrite.before) await this.db.execProtocolRawStream(close, { onRawData: () => {} });
              await this.db.execProtocolRawStream(rewrite.run, {
                onRawData: (data: Uint8Array) => {
                  firstByte ??= data[0];
                  bytes += data.length;
                  item.onData(data);
                },
              });
            });
            if (rewrite.parsed) this.statements.parsed(item.handlerId, rewrite.parsed, firstByte);
          }
        } catch (error) {
          this.owner = null;
          item.reject(error as Error);
          continue;
        }
        this.owner = this.endsExchange(item.message) && !this.db.isInTransaction() ? null : item.handlerId;
        item.resolve(bytes);
      }
    } finally {
      this.running = false;
    }
  }

  private endsExchange(message: Uint8Array): boolean {
    const type = message[0];
    if (type === SYNC || type === QUERY) return true;
    // Startup (and SSL/cancel requests) carry no type byte.
    const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
    return message.byteLength >= 8 && view.getInt32(4) === PROTOCOL_3;
  }
}

/** A running embedded database server. */
export interface EmbeddedServer {
  db: PGlite;
  host: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * Opens (or creates) the PGlite database in `dataDir` and serves it on 127.0.0.1.
 * @param dataDir - directory of the database files; `memory://` for a throwaway database.
 * @param maxConnections - connections accepted at once; keep it above every pool's size.
 * @param cachedStatements - prepared statements shared at once (see {@link StatementCache}).
 */
export async function startEmbeddedServer(dataDir: string, maxConnections: number, cachedStatements = CACHED_STATEMENTS): Promise<EmbeddedServer> {
  const db = await openPglite(dataDir);
  const scheduler = new SessionScheduler(db, new StatementCache(cachedStatements));
  const handlers = new Set<PGLiteSocketHandler>();
  const server: Server = createServer((socket: Socket) => {
    if (handlers.size >= maxConnections) {
      socket.end();
      return;
    }
    const handler = new PGLiteSocketHandler({
      queryQueue: scheduler as unknown as PGLiteSocketHandlerOptions['queryQueue'],
      closeOnDetach: true,
    });
    handlers.add(handler);
    handler.addEventListener('close', () => handlers.delete(handler));
    handler.addEventListener('error', () => handlers.delete(handler));
    void handler.attach(socket);
  });
  server.maxConnections = maxConnections;
  await new Promise<void>((resolveListen, rejectListen) => {
    server.once('error', rejectListen);
    server.listen(0, '127.0.0.1', () => resolveListen());
  });
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('embedded database server has no address');
  return {
    db,
    host: '127.0.0.1',
    port: address.port,
    async stop() {
      for (const handler of handlers) await handler.detach(true);
      handlers.clear();
      await new Promise<void>((done) => server.close(() => done()));
      await db.close();
    },
  };
}
