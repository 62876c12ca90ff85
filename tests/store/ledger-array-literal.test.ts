import assert from 'node:assert/strict';
import { it } from 'node:test';
import { arrayLiteral } from '../../src/store/sql-params.ts';
import { describeOnEachDatabase } from '../support/databases.ts';

// The ledger batch and its parties send their columns as array literals: the database must read back exactly the values given.
describeOnEachDatabase('arrayLiteral', (db) => {
  it('round-trips text with quotes, backslashes, commas, braces, white space, NULL-like and empty strings, and nulls', async () => {
    const texts = ['plain', 'a "quoted" word', 'back\\slash', 'a,b', '{braces}', ' spaced ', 'NULL', 'null', '', 'é ñ 中', null];
    // Text is quoted only where PostgreSQL would read it otherwise: quoted or not, each must come back as given.
    const edges = ['lineItem/3', '2026-01-15', 'NuLl', 'nulls', '{', '}', '"', '\\', 'tab\there', 'new\nline', 'cr\rret', '\vvt', 'ff\f', 'nbsp\u00a0', ' ', 'x', 'é'];
    const { rows } = await db().pool.query<{ v: (string | null)[]; e: (string | null)[]; none: string[] }>('SELECT $1::text[] AS v, $2::text[] AS e, $3::text[] AS none', [
      arrayLiteral(texts),
      arrayLiteral(edges),
      arrayLiteral([]),
    ]);
    assert.deepEqual(rows[0]!.v, texts);
    assert.deepEqual(rows[0]!.e, edges);
    assert.deepEqual(rows[0]!.none, []);
  });

  it('round-trips numbers, booleans, uuids and ISO timestamps in their column types', async () => {
    const { rows } = await db().pool.query<{ n: string[]; b: (boolean | null)[]; u: (string | null)[]; t: (Date | null)[] }>(
      'SELECT $1::bigint[]::text[] AS n, $2::boolean[] AS b, $3::uuid[] AS u, $4::timestamptz[] AS t',
      [
        arrayLiteral([0, -12345, Number.MAX_SAFE_INTEGER]),
        arrayLiteral([true, false, null]),
        arrayLiteral(['00000000-0000-4000-8000-00000000abcd', null]),
        arrayLiteral([new Date('2026-01-15T14:30:00.123Z').toISOString(), null]),
      ],
    );
    assert.deepEqual(rows[0]!.n, ['0', '-12345', String(Number.MAX_SAFE_INTEGER)]);
    assert.deepEqual(rows[0]!.b, [true, false, null]);
    assert.deepEqual(rows[0]!.u, ['00000000-0000-4000-8000-00000000abcd', null]);
    assert.deepEqual(rows[0]!.t.map((d) => d?.toISOString() ?? null), ['2026-01-15T14:30:00.123Z', null]);
  });
});
