import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  addMoney, currencyDigits, displayMoney, formatMoney, fromFhirMoney, money, MoneyError, moneyFromNumber, parseMoney, subtractMoney, sumMoney,
} from '../../src/domain/money.ts';

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof MoneyError, String(error));
    return error.code;
  }
  assert.fail('expected a MoneyError');
};

describe('parseMoney', () => {
  it('parses decimal text exactly, in minor units', () => {
    assert.deepEqual(parseMoney('150.00', 'USD'), { amount: 15000, currency: 'USD' });
    assert.deepEqual(parseMoney('0.1', 'USD'), { amount: 10, currency: 'USD' });
    assert.deepEqual(parseMoney(' -12.3 ', 'USD'), { amount: -1230, currency: 'USD' });
    assert.deepEqual(parseMoney('.05', 'USD'), { amount: 5, currency: 'USD' });
    assert.deepEqual(parseMoney('1200', 'JPY'), { amount: 1200, currency: 'JPY' });
    assert.deepEqual(parseMoney('1.234', 'BHD'), { amount: 1234, currency: 'BHD' });
    assert.deepEqual(parseMoney('1.5e2', 'USD'), { amount: 15000, currency: 'USD' });
    assert.deepEqual(parseMoney('25e-2', 'USD'), { amount: 25, currency: 'USD' });
    assert.deepEqual(parseMoney('-0.00', 'USD'), { amount: 0, currency: 'USD' });
    assert.deepEqual(parseMoney('12.3400', 'USD'), { amount: 1234, currency: 'USD' }, 'trailing zeros beyond the digits are exact');
    assert.deepEqual(parseMoney('90071992547409.91', 'USD'), { amount: 9007199254740991, currency: 'USD' });
  });

  it('rejects more fraction digits than the currency has, and anything that is not a decimal', () => {
    assert.equal(code(() => parseMoney('1.005', 'USD')), 'too-many-decimals');
    assert.equal(code(() => parseMoney('1.5', 'JPY')), 'too-many-decimals');
    assert.equal(code(() => parseMoney('1.2345', 'BHD')), 'too-many-decimals');
    for (const bad of ['', '1,000.00', '$5', '1.2.3', 'abc', '--1', '1e', 'NaN', 'Infinity']) {
      assert.equal(code(() => parseMoney(bad, 'USD')), 'invalid-amount', bad);
    }
    assert.equal(code(() => parseMoney('90071992547409.92', 'USD')), 'out-of-range');
    assert.equal(code(() => parseMoney('1', 'usd')), 'invalid-currency');
    assert.equal(code(() => parseMoney('1', 'XYZ')), 'invalid-currency');
  });

  it('checks the currency of every amount, also right after a valid one (the last currency is remembered)', () => {
    for (const bad of ['', 'usd', 'XYZ', 'USDX']) {
      assert.equal(currencyDigits('USD'), 2);
      assert.equal(code(() => currencyDigits(bad)), 'invalid-currency', bad);
      assert.equal(code(() => money(1, bad)), 'invalid-currency', bad);
      assert.equal(code(() => sumMoney([], bad)), 'invalid-currency', bad);
      assert.equal(code(() => moneyFromNumber(1, bad)), 'invalid-currency', bad);
    }
    assert.deepEqual([currencyDigits('JPY'), currencyDigits('USD'), currencyDigits('BHD'), currencyDigits('BHD')], [0, 2, 3, 3]);
  });

  it('knows ISO 4217 minor units', () => {
    assert.deepEqual(['USD', 'EUR', 'JPY', 'KRW', 'BHD', 'KWD', 'CLF'].map(currencyDigits), [2, 2, 0, 0, 3, 3, 4]);
  });
});

describe('FHIR Money', () => {
  it('converts a JSON number through its shortest string, exactly', () => {
    assert.deepEqual(fromFhirMoney({ value: 40.22, currency: 'EUR' }), { amount: 4022, currency: 'EUR' });
    assert.deepEqual(fromFhirMoney({ value: 0.1 + 0.2 - 0.3 === 0 ? 0 : 48, currency: 'EUR' }), { amount: 4800, currency: 'EUR' });
    assert.deepEqual(fromFhirMoney({ value: 1.1 }, 'USD'), { amount: 110, currency: 'USD' });
    assert.deepEqual(fromFhirMoney({ value: '19.99', currency: 'USD' }), { amount: 1999, currency: 'USD' });
    assert.deepEqual(moneyFromNumber(1e-2, 'USD'), { amount: 1, currency: 'USD' });
    assert.equal(code(() => fromFhirMoney({ value: 0.1 + 0.2, currency: 'USD' })), 'too-many-decimals', '0.30000000000000004 is not cents');
    assert.equal(code(() => fromFhirMoney({ value: 5 })), 'invalid-currency');
    assert.equal(code(() => fromFhirMoney({ currency: 'USD' })), 'invalid-amount');
    assert.equal(code(() => moneyFromNumber(Number.NaN, 'USD')), 'invalid-amount');
  });

  it('the number fast path agrees with parsing the shortest string, for any double', () => {
    const outcome = (fn: () => unknown) => {
      try {
        return fn();
      } catch (error) {
        return (error as MoneyError).code;
      }
    };
    const cases = fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer({ min: -1e12, max: 1e12 }).map((c) => c / 100), fc.integer({ min: -1e15, max: 1e15 }).map((c) => c / 1000));
    fc.assert(
      fc.property(cases, fc.constantFrom('USD', 'JPY', 'BHD'), (value, currency) => {
        assert.deepEqual(outcome(() => moneyFromNumber(value, currency)), outcome(() => parseMoney(String(value), currency)));
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips every number with at most the currency digits', () => {
    fc.assert(
      fc.property(fc.integer({ min: -1e12, max: 1e12 }), (cents) => {
        const value = Number(formatMoney({ amount: cents, currency: 'USD' }));
        assert.deepEqual(moneyFromNumber(value, 'USD'), money(cents, 'USD'));
      }),
    );
  });
});

describe('arithmetic and format', () => {
  it('adds and subtracts the same currency and refuses to mix', () => {
    assert.deepEqual(addMoney(parseMoney('0.10', 'USD'), parseMoney('0.20', 'USD')), parseMoney('0.30', 'USD'));
    assert.deepEqual(subtractMoney(money(100, 'USD'), money(250, 'USD')), money(-150, 'USD'));
    assert.equal(code(() => addMoney(money(1, 'USD'), money(1, 'EUR'))), 'currency-mismatch');
    assert.equal(code(() => sumMoney([money(1, 'USD'), money(1, 'CAD')])), 'currency-mismatch');
    assert.equal(code(() => sumMoney([money(1, 'USD')], 'EUR')), 'currency-mismatch');
    assert.deepEqual(sumMoney([], 'USD'), money(0, 'USD'));
    assert.equal(code(() => addMoney(money(Number.MAX_SAFE_INTEGER, 'USD'), money(1, 'USD'))), 'out-of-range');
    assert.equal(code(() => money(1.5, 'USD')), 'out-of-range');
  });

  it('formats with exactly the currency digits', () => {
    assert.equal(formatMoney(money(15000, 'USD')), '150.00');
    assert.equal(formatMoney(money(-5, 'USD')), '-0.05');
    assert.equal(formatMoney(money(1200, 'JPY')), '1200');
    assert.equal(formatMoney(money(1, 'BHD')), '0.001');
    assert.equal(displayMoney(money(123456789, 'USD')), '$1,234,567.89');
    assert.equal(displayMoney(money(9007199254740991, 'USD')), '$90,071,992,547,409.91');
  });

  const currencies = fc.constantFrom('USD', 'EUR', 'JPY', 'BHD', 'CLF');
  const amount = fc.integer({ min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER });

  it('parse ∘ format is the identity', () => {
    fc.assert(
      fc.property(amount, currencies, (minor, currency) => {
        const m = money(minor, currency);
        assert.deepEqual(parseMoney(formatMoney(m), currency), m);
      }),
    );
  });

  it('the sum of parts is exact: splitting an amount and adding the parts back gives it again', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -1e9, max: 1e9 }), { maxLength: 50 }), currencies, (parts, currency) => {
        const fromText = sumMoney(parts.map((p) => parseMoney(formatMoney(money(p, currency)), currency)), currency);
        const expected = parts.reduce((a, b) => a + b, 0);
        assert.equal(fromText.amount, expected);
        assert.deepEqual(parseMoney(formatMoney(fromText), currency), fromText);
      }),
    );
  });

  it('a sum is the same as adding its parts one by one: same total, or the same error (mixed currencies, out of range)', () => {
    const part = fc.record({ amount: fc.oneof(amount, fc.integer({ min: -1000, max: 1000 })), currency: fc.constantFrom('USD', 'USD', 'USD', 'EUR') });
    const outcome = (fn: () => unknown) => {
      try {
        return fn();
      } catch (error) {
        return { error: (error as MoneyError).code, message: (error as Error).message };
      }
    };
    fc.assert(
      fc.property(fc.array(part, { maxLength: 8 }), fc.constantFrom(undefined, 'USD', 'XXY'), (parts, currency) => {
        const reference = () => {
          const first = currency ?? parts[0]?.currency ?? 'USD';
          return parts.reduce((total, p) => addMoney(total, money(p.amount, p.currency)), money(0, first));
        };
        const given = parts.map((p) => money(p.amount, p.currency));
        assert.deepEqual(outcome(() => sumMoney(given, currency ?? (given.length === 0 ? 'USD' : undefined))), outcome(reference));
      }),
    );
    assert.equal(code(() => sumMoney([money(Number.MAX_SAFE_INTEGER, 'USD'), money(1, 'USD'), money(-1, 'USD')])), 'out-of-range');
  });

  it('decimal text with at most the currency digits parses to its digits', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 15n }), fc.integer({ min: 0, max: 2 }), (n, pad) => {
        const text = String(n).padStart(3, '0');
        const decimal = `${text.slice(0, -2)}.${text.slice(-2)}${'0'.repeat(pad)}`;
        assert.equal(parseMoney(decimal, 'USD').amount, Number(n));
      }),
    );
  });
});
