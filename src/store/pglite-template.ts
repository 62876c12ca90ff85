/**
 * A new embedded database starts from a copy of an empty cluster instead of running initdb again.
 *
 * PGlite runs PostgreSQL's initdb (in WebAssembly) whenever it opens a data directory that holds no cluster:
 * seconds of CPU for every fresh `SETTLE_DATA_DIR`, every `memory://` database of the tests and the demo. The
 * first such open on a machine keeps the cluster initdb made, as PGlite's own data-directory archive, in
 * `node_modules/.cache/settle/` (one file per PGlite version); later fresh opens load it (about a tenth of the
 * time). The archive is an empty cluster (no Settle table, no data): migrations run on it as on a new one.
 * Where the cache cannot be written, every fresh open simply runs initdb.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';

const NODE_MODULES = new URL('../../node_modules/', import.meta.url);
const PGLITE_VERSION = (JSON.parse(readFileSync(new URL('@electric-sql/pglite/package.json', NODE_MODULES), 'utf8')) as { version: string }).version;
const CACHE_DIR = fileURLToPath(new URL('.cache/settle/', NODE_MODULES));

/** Where the empty cluster of the installed PGlite version is kept. */
export const TEMPLATE_FILE = join(CACHE_DIR, `pglite-${PGLITE_VERSION}-empty-cluster.tar`);

/** Template files this process could not write (a read-only install): new databases there run initdb. */
const unwritable = new Set<string>();

/** Whether opening `dataDir` would create a cluster (`memory://`, or a directory without one). */
function isFresh(dataDir: string): boolean {
  return dataDir.startsWith('memory://') || !existsSync(join(dataDir, 'PG_VERSION'));
}

/**
 * The empty cluster, made (by one initdb) and kept on first use; undefined where it cannot be kept. Read from the
 * file for each new database rather than held in memory (it is tens of megabytes, and read in milliseconds).
 */
async function emptyCluster(file: string): Promise<Blob | undefined> {
  if (existsSync(file)) return new Blob([readFileSync(file)]);
  if (unwritable.has(file)) return undefined;
  const db = await PGlite.create('memory://');
  try {
    const archive = await db.dumpDataDir('none');
    const bytes = Buffer.from(await archive.arrayBuffer());
    try {
      mkdirSync(dirname(file), { recursive: true });
      // Written whole under another name, then renamed: a reader never sees half an archive.
      const partial = `${file}.${process.pid}.partial`;
      writeFileSync(partial, bytes);
      renameSync(partial, file);
    } catch {
      unwritable.add(file); // read-only install: new databases run initdb
      return undefined;
    }
    return new Blob([bytes]);
  } finally {
    await db.close();
  }
}

/**
 * Opens (or creates) the PGlite database in `dataDir`, a new one from the kept empty cluster.
 * @param dataDir - a directory, or `memory://` for a throwaway database.
 * @param templateFile - where the empty cluster is kept (tests use their own).
 */
export async function openPglite(dataDir: string, templateFile = TEMPLATE_FILE): Promise<PGlite> {
  if (!isFresh(dataDir)) return PGlite.create(dataDir);
  const loadDataDir = await emptyCluster(templateFile).catch(() => undefined);
  if (!loadDataDir) return PGlite.create(dataDir);
  const made = !dataDir.startsWith('memory://') && !existsSync(dataDir);
  try {
    return await PGlite.create(dataDir, { loadDataDir });
  } catch {
    // A damaged archive must not stop the engine: forget it, and create this database the slow way.
    rmSync(templateFile, { force: true });
    if (made) rmSync(dataDir, { recursive: true, force: true });
    return PGlite.create(dataDir);
  }
}
