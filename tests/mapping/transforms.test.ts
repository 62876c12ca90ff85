import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toDate, toIsoDateTime } from '../../src/mapping/transforms.ts';

describe('date transforms (remembered by kind, time zone, format and input)', () => {
  it('gives each time zone its own calendar date and offset, however often and in whatever order asked', () => {
    const value = '2026-01-15T23:30:00-05:00';
    const expected: [string, string, string][] = [
      ['America/New_York', '2026-01-15', '2026-01-15T23:30:00-05:00'],
      ['Asia/Tokyo', '2026-01-16', '2026-01-16T13:30:00+09:00'],
      ['UTC', '2026-01-16', '2026-01-16T04:30:00Z'],
      ['Pacific/Honolulu', '2026-01-15', '2026-01-15T18:30:00-10:00'],
    ];
    for (let round = 0; round < 3; round++) {
      for (const [zone, date, dateTime] of round === 1 ? [...expected].reverse() : expected) {
        assert.equal(toDate(value, zone), date, zone);
        assert.equal(toIsoDateTime(value, zone), dateTime, zone);
      }
    }
  });

  it('keeps formats and inputs apart', () => {
    assert.equal(toDate('01/02/2026', 'UTC', 'MM/dd/yyyy'), '2026-01-02');
    assert.equal(toDate('01/02/2026', 'UTC', 'dd/MM/yyyy'), '2026-02-01');
    assert.equal(toDate('20260102', 'UTC'), '2026-01-02');
    assert.equal(toDate('2026-01-02', 'Asia/Tokyo'), '2026-01-02');
    assert.equal(toIsoDateTime('2026-01-02', 'Asia/Tokyo'), '2026-01-02T00:00:00+09:00');
    assert.throws(() => toDate('2026-02-30', 'UTC'), /not a valid date/);
    assert.throws(() => toDate('2026-02-30', 'UTC'), /not a valid date/);
  });
});
