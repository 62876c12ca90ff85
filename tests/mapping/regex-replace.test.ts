import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileReplaceAll } from '../../src/mapping/regex-replace.ts';

describe('compileReplaceAll', () => {
  const compiled: [string, string][] = [
    ['^(.*/)?Patient/([^/]+)(/_history/.*)?$', '$2'],
    ['a(b)?', '[$1]'],
    ['x*', '-'],
    ['(a)|(b)', '$2$1$$'],
    ['(\\d+)-(\\d+)', '$2 to $1; $$3x'],
    ['', '|'],
  ];
  const texts = ['', 'Patient/p1', 'https://ehr.example/fhir/Patient/p1/_history/2', 'Account/a1', 'abab', 'xxaxx', 'ba', '10-20 and 3-4', 'ab\nab'];

  it('replaces every match as String.prototype.replace does', () => {
    for (const [source, substitution] of compiled) {
      const replace = compileReplaceAll(new RegExp(source, 'g'), substitution);
      assert.ok(replace, `not compiled: ${source} → ${substitution}`);
      for (const text of texts) assert.equal(replace(text), text.replace(new RegExp(source, 'g'), substitution), `${source} → ${substitution} on ${text}`);
      // Again: the matcher's place (lastIndex) does not carry over from one text to the next.
      for (const text of texts) assert.equal(replace(text), text.replace(new RegExp(source, 'g'), substitution));
    }
  });

  it('agrees with String.prototype.replace on any text', () => {
    fc.assert(
      fc.property(fc.constantFrom(...compiled), fc.stringMatching(/^[ab/x\-0-9P]{0,12}$/), ([source, substitution], text) => {
        assert.equal(compileReplaceAll(new RegExp(source, 'g'), substitution)!(text), text.replace(new RegExp(source, 'g'), substitution));
      }),
    );
  });

  it('leaves other substitutions and regexes to String.prototype.replace', () => {
    for (const [regex, substitution] of [
      [/(a)/g, '$<name>'],
      [/(a)/g, '$&'],
      [/(a)/g, '$`'],
      [/(a)/g, "$'"],
      [/(a)/g, '$2'],
      [/(a)/g, '$10'],
      [/(a)/g, '$0'],
      [/(a)/g, 'end$'],
      [/(a)/, '$1'],
      [/(a)/gi, '$1'],
      [/(a)/gu, '$1'],
    ] as const) {
      assert.equal(compileReplaceAll(regex, substitution), undefined, `${String(regex)} → ${substitution}`);
    }
  });
});
