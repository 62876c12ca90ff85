import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import pg from 'pg';
const db = await PGlite.create('/tmp/proto/data' + Date.now());
const srv = new PGLiteSocketServer({ db, port: 0, host: '127.0.0.1', maxConnections: 20 });
await srv.start();
const [host, port] = srv.getServerConn().split(':');
const pool = new pg.Pool({ host, port: Number(port), user: 'postgres', database: 'postgres', max: 10 });
await pool.query('create table t (id serial primary key, k int, v text)');
const t0 = Date.now();
let errors = 0;
await Promise.all(Array.from({ length: 10 }, async (_, w) => {
  for (let i = 0; i < 200; i++) {
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      await c.query('insert into t (k, v) values ($1, $2)', [w, 'x' + i]);
      const r = await c.query('select count(*)::int n from t where k = $1', [w]);
      if (r.rows[0].n !== i + 1) errors++;
      if (i % 7 === 0) { await c.query('ROLLBACK'); await c.query('insert into t (k, v) values ($1, $2)', [w, 'y' + i]); }
      else await c.query('COMMIT');
    } catch (e) { errors++; console.error(e.message); } finally { c.release(); }
  }
}));
const r = await pool.query('select k, count(*)::int n from t group by k order by k');
console.log(Date.now() - t0, 'ms errors', errors, r.rows.map(x => x.n).join(','));
await pool.end(); await srv.stop(); await db.close();
