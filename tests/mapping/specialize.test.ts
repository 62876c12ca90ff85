import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { specialize } from '../../src/mapping/specialize.ts';

const outside = 1;

describe('specialize', () => {
  it('copies a factory: a new function each time, working as the original', () => {
    const factory = (add: number) => (x: number) => x + add;
    const one = specialize(factory);
    const two = specialize(factory);
    assert.notEqual(one, two);
    assert.notEqual(one, factory);
    assert.equal(one(1)(2), 3);
    assert.equal(two(10)(2), 12);
  });

  it('gives the copy no module scope: helpers must be passed in', () => {
    const uses = () => () => outside;
    assert.equal(uses()(), 1);
    assert.throws(() => specialize(uses)()(), ReferenceError);
  });
});
