import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { classifyInbound, keywordReply, OPT_OUT_KEYWORDS, type KeywordIntent } from '../../src/domain/outreach-keywords.ts';
import { smsEncoding } from '../../src/outreach/templates.ts';

const intent = (text: string) => classifyInbound(text).intent;

describe('classifyInbound', () => {
  it('opts out on every standard keyword, in any case, with surrounding words and punctuation', () => {
    for (const word of ['STOP', 'END', 'CANCEL', 'UNSUBSCRIBE', 'QUIT', 'REVOKE', 'OPTOUT']) {
      for (const text of [word, word.toLowerCase(), ` ${word[0]}${word.slice(1).toLowerCase()}. `, `please ${word} now!!!`, `${word}🙏`]) {
        assert.deepEqual(classifyInbound(text), { intent: 'opt-out', keyword: word }, text);
      }
    }
    assert.deepEqual(classifyInbound('Please STOP texting me'), { intent: 'opt-out', keyword: 'STOP' });
    assert.deepEqual(classifyInbound('opt out'), { intent: 'opt-out', keyword: 'OPT OUT' });
    assert.deepEqual(classifyInbound('Opt-Out please'), { intent: 'opt-out', keyword: 'OPT OUT' });
  });

  it('treats a negated opt-out ("don’t stop") as an opt-out: the safe reading, confirmed with a way back', () => {
    assert.equal(intent("don't stop"), 'opt-out');
    assert.equal(intent('Do not cancel my appointment'), 'opt-out');
  });

  it('matches whole words only', () => {
    for (const text of ['I stopped by the office', 'the weekend works', 'cancellation policy?', 'startup', 'helpful, thanks', 'payment sent', 'Paypal']) {
      assert.equal(intent(text), 'other', text);
    }
  });

  it('opts back in on START or UNSTOP, unless an opt-out word is also there', () => {
    assert.deepEqual(classifyInbound('start'), { intent: 'opt-in', keyword: 'START' });
    assert.deepEqual(classifyInbound('Unstop.'), { intent: 'opt-in', keyword: 'UNSTOP' });
    assert.equal(intent('stop, then start'), 'opt-out');
  });

  it('answers HELP and resends the link on PAY', () => {
    assert.deepEqual(classifyInbound('help?'), { intent: 'help', keyword: 'HELP' });
    assert.deepEqual(classifyInbound('Info'), { intent: 'help', keyword: 'INFO' });
    assert.deepEqual(classifyInbound('I want to pay'), { intent: 'pay', keyword: 'PAY' });
    assert.equal(intent('help me pay'), 'help');
    assert.equal(intent('Who is this?'), 'other');
    assert.equal(intent(''), 'other');
  });

  it('understands whole-message Spanish replies, accents or not', () => {
    const cases: [string, KeywordIntent][] = [['ALTO', 'opt-out'], ['parar', 'opt-out'], ['Cancelar', 'opt-out'], ['baja', 'opt-out'], ['Ayuda', 'help'], ['pagar', 'pay'], ['Pagó', 'pay'], ['iniciar', 'opt-in']];
    for (const [text, expected] of cases) assert.equal(intent(text), expected, text);
    assert.equal(intent('mi saldo es muy alto'), 'other', 'inside a sentence a Spanish word is just a word');
  });

  it('property: any text containing an opt-out keyword as a word is an opt-out', () => {
    const filler = fc.stringMatching(/^[a-z ,.!?']{0,20}$/).filter((s) => !/\b(stop|end|cancel|unsubscribe|quit|revoke|optout|stopall|opt out)\b/i.test(s));
    fc.assert(
      fc.property(filler, fc.constantFrom(...OPT_OUT_KEYWORDS), fc.constantFrom('', ' ', '. ', '!'), filler, (before, word, sep, after) => {
        assert.equal(intent(`${before} ${word}${sep} ${after}`), 'opt-out');
      }),
    );
  });
});

describe('keywordReply', () => {
  const context = { practiceName: 'Riverside Family Medicine', practicePhone: '(555) 010-0199', payLink: 'https://pay.rfm.org/p/7Hq2xK9m' };

  it('confirms an opt-out once, with the way back', () => {
    assert.equal(keywordReply('opt-out', 'en', context), 'Riverside Family Medicine: You are unsubscribed and will get no more texts from us. Reply START to resubscribe.');
    assert.match(keywordReply('opt-out', 'es', context)!, /Responda START/);
  });

  it('answers HELP with the practice contact, and PAY with the link or that nothing is due', () => {
    assert.match(keywordReply('help', 'en', context)!, /call \(555\) 010-0199/);
    assert.match(keywordReply('help', 'es', context)!, /llame al \(555\) 010-0199/);
    assert.doesNotMatch(keywordReply('help', 'en', { ...context, practicePhone: null })!, /call/);
    assert.match(keywordReply('pay', 'en', context)!, /https:\/\/pay\.rfm\.org\/p\/7Hq2xK9m/);
    assert.equal(keywordReply('pay', 'es', { ...context, payLink: null }), 'Riverside Family Medicine: No tiene saldo pendiente. ¡Gracias!');
    assert.equal(keywordReply('other', 'en', context), null);
  });

  it('every reply is one GSM-7 segment, in both languages', () => {
    for (const language of ['en', 'es'] as const) {
      for (const i of ['opt-out', 'opt-in', 'help', 'pay'] as const) {
        for (const payLink of [context.payLink, null]) {
          const reply = keywordReply(i, language, { ...context, payLink })!;
          assert.deepEqual({ ...smsEncoding(reply), units: 0 }, { encoding: 'GSM-7', units: 0, segments: 1 }, `${language} ${i}: ${reply}`);
        }
      }
    }
  });
});
