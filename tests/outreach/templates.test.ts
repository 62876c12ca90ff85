import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { chooseLanguage } from '../../src/domain/outreach.ts';
import {
  compileTemplate, DEFAULT_TEMPLATE_SOURCES, defaultTemplates, foldToGsm, formatAmount, formatDate, loadTemplates, policyTemplateProblems,
  previewTemplate, renderMessage, SAMPLE_VALUES, selectTemplate, smsEncoding, TEMPLATE_FIELDS, TemplateError, type TemplateSource,
} from '../../src/outreach/templates.ts';
import { defaultPolicy } from '../domain/outreach-fixtures.ts';

const sms = (body: string, name = 'custom'): TemplateSource => ({ name, channel: 'sms', language: 'en', body });
const loadError = (sources: TemplateSource[]) => {
  try {
    loadTemplates(sources);
  } catch (error) {
    assert.ok(error instanceof TemplateError, String(error));
    return error;
  }
  return assert.fail('expected a TemplateError');
};

describe('loading templates', () => {
  it('rejects a clinical field at load, naming the template and the field', () => {
    for (const field of ['diagnosis', 'procedure', 'code', 'specialty', 'dob', 'patient.diagnosis', 'lastName']) {
      const error = loadError([sms('Hi {{firstName}}, pay {{amountDue}}.'), sms(`Your {{ ${field} }} visit: {{payLink}}`, 'visit-reminder')]);
      assert.equal(error.template, 'visit-reminder');
      assert.equal(error.field, field);
      assert.match(error.message, new RegExp(`^template "visit-reminder": \\(sms, en\\) uses field "${field.replace('.', '\\.')}", which is not allowed: templates may use only practiceName, practicePhone, firstName, amountDue, dueDate, payLink, statementDate`));
    }
  });

  it('checks subjects too, and rejects malformed placeholders', () => {
    const email: TemplateSource = { name: 'e', channel: 'email', language: 'es', subject: 'Su {{specialty}}', body: 'Hola' };
    assert.equal(loadError([email]).field, 'specialty');
    assert.match(loadError([sms('Pay {{amountDue} now')]).message, /"\{\{" at offset 4 that does not open a \{\{field\}\} placeholder/);
    assert.match(loadError([sms('Pay {{}} now')]).message, /uses field ""/);
  });

  it('requires GSM-7 wording in texts, a subject for email and letters, and unique names', () => {
    assert.match(loadError([sms('Su cuenta está lista: {{payLink}}')]).message, /contains "á", which is not GSM-7/);
    assert.match(loadError([{ name: 'x', channel: 'email', language: 'en', body: 'Hi' }]).message, /needs a subject/);
    assert.match(loadError([{ name: 'x', channel: 'sms', language: 'en', subject: 'S', body: 'Hi' }]).message, /a text has no subject/);
    assert.match(loadError([sms('a'), sms('b')]).message, /defined twice/);
    assert.match(loadError([sms('  ')]).message, /empty body/);
  });

  it('lists the fields a template uses', () => {
    assert.deepEqual(compileTemplate(sms('{{practiceName}}: {{ amountDue }} {{payLink}} {{amountDue}}')).fields, ['practiceName', 'amountDue', 'payLink']);
  });

  it('the defaults cover every message step of the default policy in English and Spanish', () => {
    assert.deepEqual(policyTemplateProblems(defaultPolicy(), defaultTemplates), []);
    const partial = loadTemplates(DEFAULT_TEMPLATE_SOURCES.filter((t) => !(t.name === 'final-notice' && t.language === 'es' && t.channel === 'letter')));
    assert.deepEqual(policyTemplateProblems(defaultPolicy(), partial), ['policy "default" step "final-notice": no es letter template "final-notice"']);
  });
});

describe('formatting', () => {
  it('formats integer cents exactly, US style in both languages', () => {
    assert.equal(formatAmount(123456, 'en'), '$1,234.56');
    assert.equal(formatAmount(123456, 'es'), '$1,234.56');
    assert.equal(formatAmount(5, 'en'), '$0.05');
    assert.equal(formatAmount(0, 'en'), '$0.00');
    assert.equal(formatAmount(-2500, 'en'), '-$25.00');
    assert.equal(formatAmount(900719925474099, 'en'), '$9,007,199,254,740.99');
    assert.equal(formatAmount(1200, 'en', 'JPY'), 'JPY 1,200');
    assert.throws(() => formatAmount(10.5, 'en'), RangeError);
  });

  it('property: the formatted amount reads back as the same cents', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (cents) => {
      assert.equal(BigInt(formatAmount(cents, 'en').replace(/[$,.]/g, '')), BigInt(cents));
    }));
  });

  it('formats dates per language', () => {
    assert.equal(formatDate('2026-03-08', 'en'), 'Mar 8, 2026');
    assert.equal(formatDate('2026-03-08', 'es'), '8 mar 2026');
    assert.throws(() => formatDate('03/08/2026', 'en'), RangeError);
  });
});

describe('GSM-7', () => {
  it('counts septets and segments', () => {
    assert.deepEqual(smsEncoding('a'.repeat(160)), { encoding: 'GSM-7', units: 160, segments: 1 });
    assert.deepEqual(smsEncoding('a'.repeat(161)), { encoding: 'GSM-7', units: 161, segments: 2 });
    assert.deepEqual(smsEncoding('€'.repeat(80)), { encoding: 'GSM-7', units: 160, segments: 1 });
    assert.deepEqual(smsEncoding('a'.repeat(159) + '{'), { encoding: 'GSM-7', units: 161, segments: 2 });
    assert.deepEqual(smsEncoding('María'), { encoding: 'UCS-2', units: 5, segments: 1 });
    assert.deepEqual(smsEncoding('í'.repeat(71)), { encoding: 'UCS-2', units: 71, segments: 2 });
  });

  it('folds values to GSM-7', () => {
    assert.equal(foldToGsm('María José Núñez'), 'Maria José Nuñez', 'é and ñ are GSM-7; í and ú are not');
    assert.equal(foldToGsm('O’Brien – “Ana”'), 'O\'Brien - "Ana"');
    assert.equal(foldToGsm('王'), '?');
  });
});

describe('rendering', () => {
  const values = { ...SAMPLE_VALUES };

  it('renders a text with values folded to GSM-7 and reports its segments', () => {
    const template = selectTemplate(defaultTemplates, 'statement-ready', 'sms', 'en')!;
    const message = renderMessage(template, { ...values, firstName: 'María' });
    assert.equal(message.text, 'Riverside Family Medicine: Hi Maria, your bill of $1,234.56 is ready: https://pay.rfm.org/p/AQx7Hq2xK9mZbR4tLw8nYc3vPd6sJe1f Reply STOP to end');
    assert.deepEqual(message.sms, { encoding: 'GSM-7', units: message.text.length, segments: 1 });
  });

  it('chooses Spanish from the patient’s language, and falls back to English without a Spanish template', () => {
    const language = chooseLanguage('es-MX', 'en');
    const message = renderMessage(selectTemplate(defaultTemplates, 'friendly-reminder', 'sms', language)!, values);
    assert.equal(message.language, 'es');
    assert.equal(message.text, 'Riverside Family Medicine: Hola Maria, recuerde su saldo de $1,234.56: https://pay.rfm.org/p/AQx7Hq2xK9mZbR4tLw8nYc3vPd6sJe1f STOP para salir');
    const englishOnly = loadTemplates([sms('{{practiceName}}: {{payLink}}', 'only-english')]);
    assert.equal(selectTemplate(englishOnly, 'only-english', 'sms', 'es')?.language, 'en');
    assert.equal(selectTemplate(englishOnly, 'missing', 'sms', 'es'), undefined);
  });

  it('escapes values: one line in text, HTML-escaped in the HTML part, the pay link as a link', () => {
    const email = selectTemplate(defaultTemplates, 'statement-ready', 'email', 'en')!;
    const message = renderMessage(email, { ...values, firstName: 'Ann <script>alert(1)</script>\n\nBcc: x@y', practiceName: 'Smith & Sons "Clinic"' });
    assert.equal(message.subject, 'Your statement from Smith & Sons "Clinic" is ready');
    assert.match(message.text, /^Hi Ann <script>alert\(1\)<\/script> Bcc: x@y,\n\n/);
    assert.ok(message.html?.startsWith('<p>Hi Ann &lt;script&gt;alert(1)&lt;/script&gt; Bcc: x@y,</p>\n<p>Your statement from Smith &amp; Sons &quot;Clinic&quot; dated Nov 18, 2026'), message.html);
    assert.match(message.html!, /<a href="https:\/\/pay\.rfm\.org\/p\/AQx7Hq2xK9mZbR4tLw8nYc3vPd6sJe1f">https:\/\/pay\.rfm\.org\/p\/AQx7Hq2xK9mZbR4tLw8nYc3vPd6sJe1f<\/a>/);
    assert.doesNotMatch(message.html!, /<script>/);
  });

  it('every default text with a real pay link fits one GSM-7 segment, in English and Spanish, with long names and amounts', () => {
    // A 62-character link: a 30-character pay host and a 32-character token.
    const payLink = `https://pay.example-med.com/p/${'Zk3_'.repeat(8)}`;
    assert.equal(payLink.length, 62);
    const texts = defaultTemplates.all().filter((t) => t.channel === 'sms');
    assert.equal(texts.length, 10, 'five texts, each in en and es');
    for (const template of texts) {
      for (const firstName of ['Maria', 'José', 'Christopher', 'Guadalupe', 'Bartholomew']) {
        for (const amountDueCents of [2500, 15000, 123456, 1234567]) {
          const message = renderMessage(template, { ...values, practiceName: 'Riverside Family Medicine', firstName, amountDueCents, payLink, dueDate: '2026-12-18' });
          assert.deepEqual([message.sms?.encoding, message.sms?.segments], ['GSM-7', 1], `${template.name} (${template.language}) for ${firstName}, ${amountDueCents}: ${message.text.length} characters: ${message.text}`);
          assert.ok(message.text.includes(payLink), 'the whole link, never cut');
        }
      }
    }
  });

  it('a value is never re-read as a placeholder', () => {
    const message = renderMessage(compileTemplate(sms('Hi {{firstName}}')), { ...values, firstName: '{{diagnosis}}' });
    assert.equal(message.text, 'Hi {{diagnosis}}');
  });

  it('fills a missing first name gracefully and refuses other missing fields or a non-http link', () => {
    assert.match(renderMessage(selectTemplate(defaultTemplates, 'second-notice', 'sms', 'en')!, { ...values, firstName: null }).text, /: Hi there, \$1,234\.56 is past due/);
    assert.match(renderMessage(selectTemplate(defaultTemplates, 'second-notice', 'sms', 'es')!, { ...values, firstName: '' }).text, /: Hola, saldo vencido de/);
    assert.throws(() => renderMessage(selectTemplate(defaultTemplates, 'friendly-reminder', 'sms', 'en')!, { ...values, dueDate: null }), /needs a value for "dueDate"/);
    assert.throws(() => renderMessage(selectTemplate(defaultTemplates, 'statement-ready', 'sms', 'en')!, { ...values, payLink: 'javascript:alert(1)' }), /payLink must be an absolute http\(s\) URL/);
  });


  it('no default template uses anything but the allow-listed fields', () => {
    for (const template of defaultTemplates.all()) for (const field of template.fields) assert.ok(TEMPLATE_FIELDS.includes(field));
  });

  it('previews any template with sample values, or given ones', () => {
    const preview = previewTemplate(defaultTemplates, 'final-notice', 'letter', 'es', { practiceName: 'Clínica del Valle' })!;
    assert.equal(preview.subject, 'Aviso final');
    assert.match(preview.text, /^Estimado\/a Maria:\n\nSu saldo de \$1,234\.56 de su estado de cuenta del 18 nov 2026 está vencido\./);
    assert.match(preview.text, /Clínica del Valle|\(555\) 010-0199/);
    assert.equal(previewTemplate(defaultTemplates, 'nope', 'sms', 'en'), undefined);
    for (const template of defaultTemplates.all()) assert.ok(previewTemplate(defaultTemplates, template.name, template.channel, template.language)!.text.length > 0);
  });
});
