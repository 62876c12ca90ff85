/**
 * Streaming MLLP frame decoder: `<VT> payload <FS><CR>` (0x0B … 0x1C 0x0D), on raw bytes, with no I/O.
 *
 * A frame may arrive in any number of chunks, several frames may share one chunk, and the end bytes FS and
 * CR may be split across writes. Bytes outside a frame (before the first VT, or between a frame's CR and the
 * next VT) are discarded and counted. A VT inside a frame means the sender started over: the unfinished frame
 * is discarded. A payload longer than the maximum yields one `oversize` result (with the first bytes, so the
 * caller can still read MSH-10) and the rest of that frame is skipped.
 */

/** Start of block. */
export const VT = 0x0b;
/** End of block. */
export const FS = 0x1c;
/** Carriage return, the second end byte. */
export const CR = 0x0d;

/** What one pushed chunk produced, in arrival order. */
export type FrameResult =
  | { kind: 'message'; payload: Buffer }
  | {
      kind: 'oversize';
      /** Bytes of the frame seen when it crossed the maximum. */
      size: number;
      /** The first bytes of the payload (up to {@link OVERSIZE_HEAD_BYTES}), enough to read MSH. */
      head: Buffer;
    };

/** How much of an oversize payload is kept so the caller can read its MSH segment. */
export const OVERSIZE_HEAD_BYTES = 4096;

/** Options of {@link MllpFramer}. */
export interface MllpFramerOptions {
  /** Largest payload (bytes between VT and FS) accepted. */
  maxMessageBytes: number;
}

type State = 'idle' | 'frame' | 'skip';

/** A decoder for one byte stream (one TCP connection). */
export class MllpFramer {
  private readonly maxMessageBytes: number;
  private state: State = 'idle';
  private parts: Buffer[] = [];
  private size = 0;
  /** The previous chunk ended with FS: the next byte decides whether the frame ends. */
  private pendingFs = false;
  private discarded = 0;

  constructor(options: MllpFramerOptions) {
    if (!Number.isInteger(options.maxMessageBytes) || options.maxMessageBytes < 1) {
      throw new RangeError('maxMessageBytes must be a positive integer');
    }
    this.maxMessageBytes = options.maxMessageBytes;
  }

  /** Bytes discarded so far: outside frames, in abandoned frames, and in oversize frames. */
  get discardedBytes(): number {
    return this.discarded;
  }

  /** Bytes held for a frame that has not ended yet (0 between frames). */
  get pendingBytes(): number {
    return this.state === 'frame' ? this.size + (this.pendingFs ? 1 : 0) : 0;
  }

  /** Whether a frame has started and not ended (a connection closing now loses it). */
  get inFrame(): boolean {
    return this.state !== 'idle';
  }

  /**
   * Feeds the next chunk of the stream.
   * @returns the frames (and oversize events) completed by this chunk, in order.
   */
  push(chunk: Buffer): FrameResult[] {
    const out: FrameResult[] = [];
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.pendingFs) {
        this.pendingFs = false;
        if (chunk[i] === CR) {
          i += 1;
          this.finishFrame(out);
          continue;
        }
        // A lone FS is payload (it cannot end a frame without CR).
        this.append(Buffer.of(FS), out);
        continue;
      }
      if (this.state === 'idle') {
        const start = chunk.indexOf(VT, i);
        if (start === -1) {
          this.discarded += n - i;
          return out;
        }
        this.discarded += start - i;
        i = start + 1;
        this.beginFrame();
        continue;
      }
      // In a frame (or skipping one): look for the next FS, and for a VT that restarts the frame.
      const fs = chunk.indexOf(FS, i);
      const end = fs === -1 ? n : fs;
      const vt = chunk.indexOf(VT, i);
      if (vt !== -1 && vt < end) {
        this.discarded += this.size + (vt - i);
        this.beginFrame();
        i = vt + 1;
        continue;
      }
      if (end > i) this.append(chunk.subarray(i, end), out);
      if (fs === -1) return out;
      i = fs + 1;
      if (i === n) {
        this.pendingFs = true;
        return out;
      }
      if (chunk[i] === CR) {
        i += 1;
        this.finishFrame(out);
      } else {
        this.append(Buffer.of(FS), out);
      }
    }
    return out;
  }

  private beginFrame(): void {
    this.state = 'frame';
    this.parts = [];
    this.size = 0;
  }

  private append(bytes: Buffer, out: FrameResult[]): void {
    if (this.state === 'skip') {
      this.discarded += bytes.length;
      return;
    }
    this.size += bytes.length;
    if (this.size > this.maxMessageBytes) {
      const head = Buffer.concat([...this.parts, bytes]).subarray(0, OVERSIZE_HEAD_BYTES);
      out.push({ kind: 'oversize', size: this.size, head: Buffer.from(head) });
      this.discarded += this.size;
      this.parts = [];
      this.state = 'skip';
      return;
    }
    // Copy: the caller may reuse the chunk's memory.
    this.parts.push(Buffer.from(bytes));
  }

  private finishFrame(out: FrameResult[]): void {
    if (this.state === 'frame') {
      out.push({ kind: 'message', payload: this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.size) });
    }
    this.state = 'idle';
    this.parts = [];
    this.size = 0;
  }
}

/** Wraps a payload in MLLP start and end bytes. */
export function encodeFrame(payload: Buffer | string, encoding: BufferEncoding = 'utf8'): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, encoding) : payload;
  const frame = Buffer.allocUnsafe(body.length + 3);
  frame[0] = VT;
  body.copy(frame, 1);
  frame[body.length + 1] = FS;
  frame[body.length + 2] = CR;
  return frame;
}
