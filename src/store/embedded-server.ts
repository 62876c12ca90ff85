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
 */
import { createServer, type Server, type Socket } from 'node:net';
import { PGlite } from '@electric-sql/pglite';
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
/** The startup message has no type byte; its second int32 is the protocol version 3.0. */
const PROTOCOL_3 = 196608;

/** Gives the single PGlite session to one connection at a time, for whole exchanges and transactions. */
class SessionScheduler {
  private readonly queue: QueuedMessage[] = [];
  private owner: number | null = null;
  private running = false;
  private readonly db: PGlite;

  constructor(db: PGlite) {
    this.db = db;
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
          await this.db.runExclusive(() =>
            this.db.execProtocolRawStream(item.message, {
              onRawData: (data: Uint8Array) => {
                bytes += data.length;
                item.onData(data);
              },
            }),
          );
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
 */
export async function startEmbeddedServer(dataDir: string, maxConnections: number): Promise<EmbeddedServer> {
  const db = await PGlite.create(dataDir);
  const scheduler = new SessionScheduler(db);
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
