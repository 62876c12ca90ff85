/**
 * Plain TCP helpers for tests that talk MLLP to a real listener: a free port, one message and its ACK.
 */
import { connect, createServer } from 'node:net';
import { readAck } from '../../src/connectors/hl7v2/ack.ts';
import { encodeFrame } from '../../src/connectors/hl7v2/mllp-framer.ts';

/** A port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** Sends one message over MLLP to 127.0.0.1:`port` and reads its ACK. */
export function sendMllp(port: number, message: string): Promise<ReturnType<typeof readAck>> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(encodeFrame(message)));
    let received = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf(0x1c);
      if (end >= 0) {
        socket.end();
        resolve(readAck(received.subarray(1, end).toString('utf8')));
      }
    });
    socket.on('error', reject);
  });
}
