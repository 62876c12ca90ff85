import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CR, encodeFrame, FS, MllpFramer, VT, type FrameResult } from '../../../src/connectors/hl7v2/mllp-framer.ts';

const messages = (results: FrameResult[]) => results.map((r) => (r.kind === 'message' ? r.payload.toString('latin1') : `<oversize ${r.size}>`));

/** Feeds `bytes` to a framer cut at `cuts` and returns everything it produced. */
function feed(bytes: Buffer, cuts: number[], max = 1 << 20): { out: string[]; framer: MllpFramer } {
  const framer = new MllpFramer({ maxMessageBytes: max });
  const out: string[] = [];
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    out.push(...messages(framer.push(bytes.subarray(at, cut))));
    at = cut;
  }
  return { out, framer };
}

/** Deterministic PRNG (mulberry32) so a failing case can be replayed. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('MLLP framer', () => {
  it('decodes one frame delivered whole', () => {
    assert.deepEqual(feed(encodeFrame('MSH|a'), []).out, ['MSH|a']);
  });

  it('decodes a frame spread over many chunks, one byte at a time', () => {
    const frame = encodeFrame('MSH|^~\\&|A\rPID|1');
    const cuts = Array.from({ length: frame.length - 1 }, (_, i) => i + 1);
    assert.deepEqual(feed(frame, cuts).out, ['MSH|^~\\&|A\rPID|1']);
  });

  it('decodes two (and three) frames in one chunk', () => {
    const bytes = Buffer.concat([encodeFrame('one'), encodeFrame('two'), encodeFrame('three')]);
    assert.deepEqual(feed(bytes, []).out, ['one', 'two', 'three']);
  });

  it('handles FS and CR split across writes', () => {
    const frame = encodeFrame('MSH|x');
    const fsAt = frame.indexOf(FS);
    const { out, framer } = feed(frame, [fsAt + 1]);
    assert.deepEqual(out, ['MSH|x']);
    assert.equal(framer.inFrame, false);
    // And the end split right before FS, with the next frame in the same chunk as CR.
    const two = Buffer.concat([frame, encodeFrame('MSH|y')]);
    assert.deepEqual(feed(two, [fsAt, fsAt + 1, fsAt + 2]).out, ['MSH|x', 'MSH|y']);
  });

  it('keeps a frame open until FS is followed by CR', () => {
    const framer = new MllpFramer({ maxMessageBytes: 100 });
    assert.deepEqual(framer.push(Buffer.from([VT, 0x41, FS])), []);
    assert.equal(framer.inFrame, true);
    assert.deepEqual(messages(framer.push(Buffer.from([0x42, FS, CR]))), [`A${String.fromCharCode(FS)}B`]);
  });

  it('discards garbage before VT and between frames', () => {
    const bytes = Buffer.concat([Buffer.from('GET / HTTP/1.1\r\n\r\n'), encodeFrame('MSH|1'), Buffer.from('\r\nnoise'), encodeFrame('MSH|2')]);
    const { out, framer } = feed(bytes, [5, 30]);
    assert.deepEqual(out, ['MSH|1', 'MSH|2']);
    assert.equal(framer.discardedBytes, 'GET / HTTP/1.1\r\n\r\n'.length + '\r\nnoise'.length);
    assert.deepEqual(feed(Buffer.from('no frame at all'), []).out, []);
  });

  it('restarts on a VT inside a frame (the sender gave up on the first one)', () => {
    const bytes = Buffer.concat([Buffer.from([VT]), Buffer.from('MSH|trunc'), encodeFrame('MSH|whole')]);
    assert.deepEqual(feed(bytes, [4]).out, ['MSH|whole']);
  });

  it('reports an oversize frame once, with its head, and skips the rest of it', () => {
    const big = 'MSH|^~\\&|A|B|C|D|20260101||DFT^P03|CTRL1|P|2.5.1\r' + 'X'.repeat(500);
    const framer = new MllpFramer({ maxMessageBytes: 100 });
    const bytes = Buffer.concat([encodeFrame(big), encodeFrame('MSH|after')]);
    const results: FrameResult[] = [];
    for (let i = 0; i < bytes.length; i += 37) results.push(...framer.push(bytes.subarray(i, i + 37)));
    assert.equal(results.length, 2);
    assert.equal(results[0].kind, 'oversize');
    if (results[0].kind === 'oversize') {
      assert.ok(results[0].size > 100);
      assert.ok(results[0].head.toString('latin1').startsWith('MSH|^~\\&|A|B|C|D|20260101||DFT^P03|CTRL1|'));
    }
    assert.deepEqual(messages(results.slice(1)), ['MSH|after']);
  });

  it('accepts a frame of exactly the maximum size', () => {
    assert.deepEqual(feed(encodeFrame('x'.repeat(64)), [10], 64).out, ['x'.repeat(64)]);
    assert.deepEqual(feed(encodeFrame('x'.repeat(65)), [10], 64).out, ['<oversize 65>']);
  });

  it('property: any sequence of frames, cut anywhere, with garbage between, decodes to the same payloads', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const random = prng(seed);
      const payloads: string[] = [];
      const parts: Buffer[] = [];
      const count = 1 + Math.floor(random() * 5);
      for (let m = 0; m < count; m++) {
        if (random() < 0.3) parts.push(Buffer.from('junk\r\n'.slice(0, 1 + Math.floor(random() * 6))));
        // Payload bytes: anything but VT; FS only when not followed by CR (it is then payload).
        const length = Math.floor(random() * 80);
        let payload = '';
        for (let k = 0; k < length; k++) {
          const c = random() < 0.05 ? FS : 0x0d + Math.floor(random() * 100);
          payload += String.fromCharCode(c === VT ? 0x41 : c);
        }
        payload = payload.replaceAll(`${String.fromCharCode(FS)}\r`, 'ab').replace(new RegExp(`${String.fromCharCode(FS)}$`), 'z');
        payloads.push(payload);
        parts.push(encodeFrame(payload, 'latin1'));
      }
      const bytes = Buffer.concat(parts);
      const cuts = Array.from({ length: Math.floor(random() * 8) }, () => Math.floor(random() * bytes.length)).sort((a, b) => a - b);
      assert.deepEqual(feed(bytes, cuts).out, payloads, `seed ${seed}`);
    }
  });
});
