/**
 * The compiled validator's quick reading of simple invariants (`quickCheck` in `fhir-validator-constraints.ts`): it
 * may say true only where Medplum's FHIRPath says true, on any object, and it reads nothing but `or`, `and`,
 * `member.exists()` and `member = 'text'`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evalFhirPathTyped, parseFhirPath } from '@medplum/core';
import fc from 'fast-check';
import { loadBaseDefinitions } from '../../src/mapping/fhir-validator.ts';
import { quickCheck } from '../../src/mapping/fhir-validator-constraints.ts';

loadBaseDefinitions();

const EXPRESSIONS = [
  'subject.exists() or account.exists()',
  "((lineItem.exists() or totalGross.exists()) or status = 'cancelled') or status = 'entered-in-error'",
  "status = 'cancelled' and lineItem.exists()",
  "(note.exists() and identifier.exists()) or (status = 'issued' and cancelledReason.exists())",
  "cancelledReason.exists() or status = 'draft'",
];

/**
 * Each member's JSON values: of its type (as the walker has checked before any invariant is evaluated), and the
 * unclear ones the reader must leave to Medplum (empty strings, objects and arrays, nulls).
 */
const UNCLEAR = [null, '', '  ', {}, [], [{}], [null]];
const VALUES: Record<string, unknown[]> = {
  subject: [{ reference: 'Patient/1' }, { display: 'Maria' }],
  account: [{ reference: 'Account/1' }],
  status: ['cancelled', 'issued', 'draft', 'entered-in-error'],
  lineItem: [[{ sequence: 1 }], [{ sequence: 1 }, { sequence: 2 }]],
  totalGross: [{ value: 1, currency: 'USD' }],
  note: [[{ text: 'a' }], [{ text: 'a' }, { text: 'b' }]],
  identifier: [[{ value: 'X1' }]],
  cancelledReason: ['entered twice'],
};
const member = (name: string) => fc.constantFrom<unknown>(...VALUES[name]!, ...UNCLEAR);
/** Keys beside a member that make it unclear: a primitive's extensions, a choice-like name. */
const EXTRA_KEYS = { _status: fc.constant({ id: 'x' }), _cancelledReason: fc.constant({ id: 'y' }), statusReason: fc.constant('why'), accountType: fc.constant('x') };
const invoice = fc
  .record({
    ...Object.fromEntries(Object.keys(VALUES).map((name) => [name, member(name)])),
    ...EXTRA_KEYS,
  }, { requiredKeys: [] })
  .map((members) => ({ resourceType: 'Invoice', ...members }));

/** Medplum's verdict, as its validator takes it: exactly one `true`. */
function medplumHolds(expression: string, resource: Record<string, unknown>): boolean {
  try {
    const result = evalFhirPathTyped(parseFhirPath(expression), [{ type: 'Invoice', value: resource }], {});
    return result.length === 1 && result[0]?.value === true;
  } catch {
    return false;
  }
}

describe('quick reading of simple invariants', () => {
  it('says true only where Medplum does, whatever the members hold', () => {
    for (const expression of EXPRESSIONS) {
      const quick = quickCheck(parseFhirPath(expression));
      assert.ok(quick, `${expression} is read quickly`);
      fc.assert(
        fc.property(invoice, (resource) => {
          if (quick(resource) === true) assert.equal(medplumHolds(expression, resource), true, `${expression} on ${JSON.stringify(resource)}`);
        }),
        { numRuns: 2000 },
      );
    }
  });

  it('reads the common cases itself, and leaves extensions and choice-like keys to Medplum', () => {
    const quick = quickCheck(parseFhirPath('subject.exists() or account.exists()'))!;
    assert.equal(quick({ resourceType: 'Invoice', subject: { reference: 'Patient/1' } }), true);
    assert.equal(quick({ resourceType: 'Invoice' }), false);
    assert.equal(quick({ resourceType: 'Invoice', subject: {} }), undefined);
    const status = quickCheck(parseFhirPath("status = 'cancelled' or lineItem.exists()"))!;
    assert.equal(status({ resourceType: 'Invoice', status: 'cancelled' }), true);
    assert.equal(status({ resourceType: 'Invoice', status: 'issued' }), false);
    assert.equal(status({ resourceType: 'Invoice' }), 'empty');
    assert.equal(status({ resourceType: 'Invoice', status: 'cancelled', _status: { id: 'x' } }), undefined);
    assert.equal(status({ resourceType: 'Invoice', status: 'issued', lineItemX: 1 }), undefined);
  });

  it('reads no other expression', () => {
    for (const expression of ["status != 'cancelled'", 'subject.exists().not()', 'lineItem.count() > 0', '%resource.subject.exists()', 'subject.reference.exists()', "status = 'a' implies lineItem.exists()", "status ~ 'cancelled'"]) {
      assert.equal(quickCheck(parseFhirPath(expression)), undefined, expression);
    }
  });
});
