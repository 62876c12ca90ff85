/**
 * Staff API over print batches:
 *   GET /print-batches          the practice's batches, newest day first (counts, no addresses)
 *   GET /print-batches/{date}   the batch PDF of a day (`YYYY-MM-DD`), to print and mail
 */
import { ApiError } from '../api/problem.ts';
import type { AnyRoute, JsonSchema } from '../api/routes.ts';
import type { Clock } from '../domain/clock.ts';
import type { Database } from '../store/database.ts';
import type { PhiCipher } from '../store/phi-crypto.ts';
import { PrintBatchStore, type PrintBatch } from '../store/print-batches.ts';

/** What the print-batch routes need. */
export interface PrintBatchRouteDependencies {
  db: Database;
  cipher: PhiCipher;
  clock: Clock;
}

const BATCH_SCHEMA: JsonSchema = {
  type: 'object',
  properties: {
    date: { type: 'string', format: 'date' },
    state: { enum: ['rendering', 'ready'] },
    letters: { type: 'integer', description: 'Letters printed (one page each).' },
    skipped: { type: 'integer', description: 'Letters not printed because their balance no longer needed one.' },
    fileName: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
    readyAt: { type: ['string', 'null'], format: 'date-time' },
    download: { type: ['string', 'null'], description: 'Path of the PDF, when letters were printed.' },
  },
};

const view = (b: PrintBatch) => ({
  date: b.date, state: b.state, letters: b.letters, skipped: b.skipped, fileName: b.fileName, createdAt: b.createdAt, readyAt: b.readyAt,
  download: b.state === 'ready' && b.letters > 0 ? `/print-batches/${b.date}` : null,
});

/** The print-batch routes. */
export function printBatchRoutes(deps: PrintBatchRouteDependencies): AnyRoute[] {
  const store = new PrintBatchStore(deps.db.pool, deps.cipher, deps.clock);
  return [
    {
      method: 'get',
      path: '/print-batches',
      summary: 'Daily print batches of letters, newest day first.',
      tag: 'outreach',
      access: ['staff'],
      query: {
        type: 'object',
        additionalProperties: false,
        properties: { limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 }, offset: { type: 'integer', minimum: 0, default: 0 } },
      },
      responses: { 200: { description: 'The batches.', schema: { type: 'object', properties: { batches: { type: 'array', items: BATCH_SCHEMA } } } } },
      async handler({ principal, query }) {
        const batches = await store.list(principal!.practiceId, query as { limit: number; offset: number });
        return { batches: batches.map(view) };
      },
    },
    {
      method: 'get',
      path: '/print-batches/{date}',
      summary: "A day's print batch as one PDF (a page per letter).",
      tag: 'outreach',
      access: ['staff'],
      responses: {
        200: { description: 'The PDF.', contentType: 'application/pdf' },
        400: { description: 'The date is not YYYY-MM-DD.' },
        404: { description: 'No batch with letters that day.' },
      },
      async handler({ principal, params, res }) {
        const date = params.date ?? '';
        if (!/^\d{4}-\d{2}-\d{2}$/.test(date) || Number.isNaN(Date.parse(`${date}T00:00:00Z`))) {
          throw new ApiError(400, 'invalid_request', `The batch date must be YYYY-MM-DD (got "${date.slice(0, 40)}").`, [{ path: '/date', message: 'must be YYYY-MM-DD' }]);
        }
        const found = await store.pdf(principal!.practiceId, date);
        if (!found) throw new ApiError(404, 'not_found', `No print batch with letters on ${date}.`);
        res.status(200).type('application/pdf').set('Content-Disposition', `attachment; filename="${found.batch.fileName}"`).set('Cache-Control', 'no-store').send(found.pdf);
        return undefined;
      },
    },
  ];
}
