/**
 * The DSN reader on bounces as Postfix, Exim and Microsoft Exchange write them, a transient delay, and
 * messages that are not DSNs.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { NotADsnError, parseDsn } from '../../src/outreach/dsn.ts';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}.eml`, import.meta.url), 'utf8');
const SENT_ID = '<3f1c2a9e-7b4d-4e0a-9c1f-2d8e6b5a4c3f@riverside.example>';

describe('reading delivery status notifications (RFC 3464)', () => {
  it('Postfix: folded boundary, text/rfc822-headers, Original-Recipient', () => {
    const dsn = parseDsn(fixture('dsn-postfix'));
    assert.equal(dsn.originalMessageId, SENT_ID);
    assert.deepEqual(dsn.recipients, [{ finalRecipient: 'maria.gonzalez@example.com', originalRecipient: 'maria.gonzalez@example.com', action: 'failed', status: '5.1.1', permanent: true }]);
  });

  it('Exim: unquoted boundary, lower-case field names, the whole message returned as message/rfc822 with its own multipart', () => {
    const dsn = parseDsn(fixture('dsn-exim'));
    assert.equal(dsn.originalMessageId, SENT_ID);
    assert.deepEqual(dsn.recipients, [{ finalRecipient: 'maria.gonzalez@example.com', action: 'failed', status: '5.0.0', permanent: true }]);
  });

  it('Microsoft Exchange: CRLF, a nested multipart/alternative in base64, a three-part status, a folded Message-ID', () => {
    const raw = fixture('dsn-exchange');
    assert.ok(raw.includes('\r\n'), 'the fixture keeps CRLF line ends');
    const dsn = parseDsn(raw);
    assert.equal(dsn.originalMessageId, SENT_ID);
    assert.deepEqual(dsn.recipients.map((r) => [r.finalRecipient, r.action, r.status, r.permanent]), [['maria.gonzalez@example.com', 'failed', '5.1.10', true]]);
  });

  it('a delay warning (Action: delayed, 4.7.1) is not permanent', () => {
    const dsn = parseDsn(fixture('dsn-postfix-delayed'));
    assert.deepEqual(dsn.recipients.map((r) => [r.action, r.status, r.permanent]), [['delayed', '4.7.1', false]]);
  });

  it('reads several recipients, an address in angle brackets with a comment, and any case of fields and parameters', () => {
    const raw = [
      'Content-Type: MULTIPART/REPORT; Report-Type=delivery-status; BOUNDARY="xyz"', '', '--xyz', 'CONTENT-TYPE: Message/Delivery-Status', '',
      'reporting-mta: dns; relay.example', '',
      'FINAL-RECIPIENT: RFC822; <ana@example.org> (mailbox)', 'ACTION: Failed', 'STATUS: 5.2.2 (mailbox full)', '',
      'final-recipient: rfc822;jo@example.org', 'action: delivered', 'status: 2.0.0', '',
      '--xyz', 'Content-Type: text/rfc822-headers', '', 'Message-Id: bare-id@riverside.example', '', '--xyz--', '',
    ].join('\r\n');
    const dsn = parseDsn(raw);
    assert.equal(dsn.originalMessageId, '<bare-id@riverside.example>');
    assert.deepEqual(dsn.recipients.map((r) => [r.finalRecipient, r.action, r.status, r.permanent]), [['ana@example.org', 'failed', '5.2.2', true], ['jo@example.org', 'delivered', '2.0.0', false]]);
  });

  it('refuses what is not a DSN, naming what is missing', () => {
    assert.throws(() => parseDsn(fixture('not-a-dsn')), (e: unknown) => e instanceof NotADsnError && e.missing === 'message/delivery-status');
    assert.throws(() => parseDsn(''), (e: unknown) => e instanceof NotADsnError && e.missing === 'message/delivery-status');
    const noStatus = 'Content-Type: multipart/report; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\nFinal-Recipient: rfc822; a@example.org\nAction: failed\n\n--b--\n';
    assert.throws(() => parseDsn(noStatus), (e: unknown) => e instanceof NotADsnError && e.missing === 'Status');
    const noRecipient = 'Content-Type: multipart/report; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n--b--\n';
    assert.throws(() => parseDsn(noRecipient), (e: unknown) => e instanceof NotADsnError && e.missing === 'Final-Recipient');
  });
});
