import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { SETTING_SPECS } from '../../src/config/settings.ts';

it('documents every setting in the README table, with its default', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  for (const [name, spec] of Object.entries(SETTING_SPECS)) {
    const row = readme.split('\n').find((line) => line.startsWith(`| \`${name}\` |`));
    assert.ok(row, `README has no row for ${name}`);
    const shownDefault = 'default' in spec ? `\`${spec.default}\`` : '—';
    assert.equal(row.split('|')[2].trim(), shownDefault, `README default of ${name}`);
  }
});
