import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Hl7Message } from '@medplum/core';
import { buildAck, hl7Timestamp, Hl7ErrorCode, newControlId, readAck } from '../../../src/connectors/hl7v2/ack.ts';

const now = new Date('2026-03-01T15:04:05.678Z');
const dft = Hl7Message.parse('MSH|^~\\&|PMS|CLINIC|SETTLE|SETTLEFAC|20260301150000||DFT^P03^DFT_P03|MSG0001|P|2.5.1||||||8859/1\rEVN|P03|20260301');

describe('ACK builder', () => {
  it('builds an AA with sender and receiver swapped and MSH-10 echoed in MSA-2', () => {
    const text = buildAck({ code: 'AA', message: dft, now, ackControlId: 'ACK1' });
    const segments = text.split('\r');
    assert.equal(segments[0], 'MSH|^~\\&|SETTLE|SETTLEFAC|PMS|CLINIC|20260301150405.678+0000||ACK^P03^ACK|ACK1|P|2.5.1||||||8859/1');
    assert.equal(segments[1], 'MSA|AA|MSG0001');
    assert.equal(segments.length, 2);
    const parsed = Hl7Message.parse(text);
    assert.equal(parsed.getAckType(), 'AA');
  });

  it('adds ERR with table 0357 code and location for AE and AR', () => {
    const text = buildAck({ code: 'AE', message: dft, now, error: { code: Hl7ErrorCode.requiredFieldMissing, location: { segment: 'PID', sequence: 1, field: 18 }, text: 'PID-18 | needed' } });
    const err = text.split('\r')[2];
    assert.equal(err, 'ERR||PID^1^18|101^Required field missing^HL70357|E||||PID-18 \\F\\ needed');
    assert.deepEqual(readAck(text), { code: 'AE', controlId: 'MSG0001', errorCode: 101, errorLocation: 'PID^1^18' });
    const ar = buildAck({ code: 'AR', message: dft, now, error: { code: Hl7ErrorCode.unsupportedMessageType, location: { segment: 'MSH', field: 9 } } });
    assert.deepEqual(readAck(ar), { code: 'AR', controlId: 'MSG0001', errorCode: 200, errorLocation: 'MSH^1^9' });
  });

  it('acknowledges what could not be parsed, with the control id when known', () => {
    const text = buildAck({ code: 'AR', controlId: 'X|1', now, error: { code: Hl7ErrorCode.segmentSequenceError, location: { segment: 'MSH' } } });
    assert.match(text, /^MSH\|\^~\\&\|SETTLE\|\|\|\|/);
    assert.deepEqual(readAck(text), { code: 'AR', controlId: 'X\\F\\1', errorCode: 100, errorLocation: 'MSH^1' });
  });

  it('answers in the delimiters of the message', () => {
    const odd = Hl7Message.parse('MSH#*~!@#APP#FAC#RAPP#RFAC#1##ADT*A04#C9#P#2.5');
    const text = buildAck({ code: 'AA', message: odd, now, ackControlId: 'A' });
    assert.equal(text.split('\r')[0], 'MSH#*~!@#RAPP#RFAC#APP#FAC#20260301150405.678+0000##ACK*A04*ACK#A#P#2.5');
    assert.equal(text.split('\r')[1], 'MSA#AA#C9');
  });

  it('gives each ACK a fresh 20-character hex control id, every digit random', () => {
    const ids = Array.from({ length: 2000 }, newControlId);
    assert.ok(ids.every((id) => /^[0-9a-f]{20}$/.test(id)));
    assert.equal(new Set(ids).size, ids.length);
    // No position is fixed (a UUID's version and variant digits are left out): each takes many values.
    for (let i = 0; i < 20; i++) assert.ok(new Set(ids.map((id) => id[i])).size >= 12, `digit ${i} varies`);
    assert.equal(readAck(buildAck({ code: 'AA', message: dft, now })).code, 'AA');
  });

  it('formats HL7 timestamps in UTC', () => {
    assert.equal(hl7Timestamp(new Date('2026-12-31T23:59:59.001Z')), '20261231235959.001+0000');
  });
});
