import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Hl7Message } from '@medplum/core';
import {
  charsetOf,
  decodeEscapes,
  decodeHl7Bytes,
  escapeHl7,
  parseAmountMinorUnits,
  parseMoneyField,
  readMsh18,
} from '../../../src/connectors/hl7v2/hl7-text.ts';
import { delimitersOf } from '../../../src/connectors/hl7v2/ack.ts';

describe('HL7 charset', () => {
  it('reads MSH-18 from raw bytes', () => {
    assert.equal(readMsh18(Buffer.from('MSH|^~\\&|A|B|C|D|1||ADT^A04|1|P|2.5.1||||||8859/1\rPID|')), '8859/1');
    assert.equal(readMsh18(Buffer.from('MSH|^~\\&|A|B|C|D|1||ADT^A04|1|P|2.5.1||||||UNICODE UTF-8~8859/1|\n')), 'UNICODE UTF-8');
    assert.equal(readMsh18(Buffer.from('MSH|^~\\&|A|B|C|D|1||ADT^A04|1|P|2.5\rPID||||||||||||||||||8859/1')), undefined);
    assert.equal(readMsh18(Buffer.from('MSH#*~\\@#A#B#C#D#1##ADT*A04#1#P#2.5.1######8859/1')), '8859/1');
    assert.equal(readMsh18(Buffer.from('garbage')), undefined);
  });

  it('decodes by MSH-18, UTF-8 by default', () => {
    const latin = Buffer.from('MSH|^~\\&|A|B|C|D|1||ADT^A04|1|P|2.5.1||||||8859/1\rPID|||1||Müller^Jürgen', 'latin1');
    assert.deepEqual(decodeHl7Bytes(latin).charset, 'ISO-8859-1');
    assert.match(decodeHl7Bytes(latin).text, /Müller\^Jürgen/);
    const utf = Buffer.from('MSH|^~\\&|A|B|C|D|1||ADT^A04|1|P|2.5.1\rPID|||1||Müller', 'utf8');
    assert.deepEqual(decodeHl7Bytes(utf), { text: 'MSH|^~\\&|A|B|C|D|1||ADT^A04|1|P|2.5.1\rPID|||1||Müller', charset: 'UTF-8' });
    // Undeclared latin1 bytes are not valid UTF-8: refused rather than silently mangled…
    const undeclared = Buffer.from('MSH|^~\\&|A|B|C|D|1||ADT^A04|1|P|2.5.1\rPID|||1||Müller', 'latin1');
    assert.throws(() => decodeHl7Bytes(undeclared), { code: 'invalid_bytes' });
    // …unless the connector's default says ISO-8859-1.
    assert.match(decodeHl7Bytes(undeclared, 'ISO-8859-1').text, /Müller/);
  });

  it('names supported charsets and refuses others', () => {
    assert.equal(charsetOf('8859/1', 'UTF-8'), 'ISO-8859-1');
    assert.equal(charsetOf('UNICODE UTF-8', 'ISO-8859-1'), 'UTF-8');
    assert.equal(charsetOf(undefined, 'ISO-8859-1'), 'ISO-8859-1');
    assert.throws(() => charsetOf('ISO IR87', 'UTF-8'), { code: 'unsupported_charset' });
  });
});

describe('HL7 escape sequences', () => {
  it('decodes \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ and \\Xhh\\', () => {
    assert.equal(decodeEscapes('a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f'), 'a|b^c&d~e\\f');
    assert.equal(decodeEscapes('\\X41\\\\X4243\\'), 'ABC');
    assert.equal(decodeEscapes('caf\\XC3A9\\'), 'café');
    assert.equal(decodeEscapes('caf\\XE9\\', undefined, 'ISO-8859-1'), 'café');
    assert.equal(decodeEscapes('line\\.br\\next \\H\\bold\\N\\'), 'line\\.br\\next \\H\\bold\\N\\', 'formatting is left as sent');
    assert.equal(decodeEscapes('unterminated \\F'), 'unterminated \\F');
  });

  it('honours the delimiters declared in MSH-1/2', () => {
    const message = Hl7Message.parse('MSH#*~!@#A#B#C#D#1##ADT*A04#1#P#2.5.1\rPID#1##X!F!Y!S!Z!E!');
    const d = delimitersOf(message);
    assert.deepEqual(d, { field: '#', component: '*', repetition: '~', escape: '!', subcomponent: '@' });
    assert.equal(decodeEscapes(message.getSegment('PID')!.getField(3).toString(), d), 'X#Y*Z!');
  });

  it('escape and decode round-trip', () => {
    const text = 'O\'Brien | Smith ^ & ~ \\ done\r\nnext';
    assert.equal(decodeEscapes(escapeHl7(text)), text);
    assert.ok(!/[|^&~\r\n]/.test(escapeHl7(text)));
  });
});

describe('HL7 amounts', () => {
  it('parses amounts exactly into minor units', () => {
    const cases: Array<[string, number]> = [
      ['150.00', 15000],
      ['-25.5', -2550],
      ['+3', 300],
      ['0.10', 10],
      ['.5', 50],
      ['7.', 700],
      ['0.29', 29],
      ['1.005000', undefined as unknown as number],
      ['19.999', undefined as unknown as number],
      ['1.10', 110],
      ['-0.00', 0],
      ['90071992547409.91', 9007199254740991],
    ];
    for (const [text, expected] of cases) {
      if (expected === undefined) assert.throws(() => parseAmountMinorUnits(text), { code: 'invalid_amount' }, text);
      else assert.equal(parseAmountMinorUnits(text), expected, text);
    }
    assert.equal(parseAmountMinorUnits('1.500'), 150, 'trailing zeros beyond the minor unit are fine');
    assert.equal(Object.is(parseAmountMinorUnits('-0'), 0), true);
  });

  it('refuses what is not an exact amount', () => {
    for (const bad of ['1,000.00', '', ' ', '-', '.', '1e3', '12.3.4', 'USD 5', '$5.00', '0x10', '90071992547409.92', 'NaN', 'Infinity']) {
      assert.throws(() => parseAmountMinorUnits(bad), { code: 'invalid_amount' }, bad);
    }
  });

  it('is exact where floats are not', () => {
    // 0.29 * 100 = 28.999999999999996 and 1.15 * 100 = 114.99999999999999 in binary floating point.
    for (let cents = 0; cents < 100_000; cents += 7) {
      const text = `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
      assert.equal(parseAmountMinorUnits(text), cents);
    }
  });

  it('reads amount&currency from the first sub-component of a money field', () => {
    assert.deepEqual(parseMoneyField('150.00&USD'), { minorUnits: 15000, currency: 'USD' });
    assert.deepEqual(parseMoneyField('-25.5&usd^UP'), { minorUnits: -2550, currency: 'USD' });
    assert.deepEqual(parseMoneyField('42'), { minorUnits: 4200, currency: 'USD' });
    assert.deepEqual(parseMoneyField('1200&JPY'), { minorUnits: 1200, currency: 'JPY' });
    assert.deepEqual(parseMoneyField('12@EUR*X', { field: '#', component: '*', repetition: '~', escape: '!', subcomponent: '@' }), { minorUnits: 1200, currency: 'EUR' });
    assert.throws(() => parseMoneyField('1,000.00&USD'), { code: 'invalid_amount' });
    assert.throws(() => parseMoneyField('10.00&DOLLARS'), { code: 'invalid_amount' });
  });
});
