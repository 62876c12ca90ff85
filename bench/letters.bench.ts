/**
 * Print batch rendering: 300 statements (en/es, 6 lines each) into one PDF, on one core.
 *  - settle: `renderStatementsPdf` with its QR codes drawn as small grayscale PNGs straight from the QR matrix;
 *  - peer: the same pages with the `qrcode` package's own PNG renderer (`QRCode.toBuffer`, 240 px) for each code.
 * Prints `name: value unit (ratio vs peer)`.
 */
import QRCode from 'qrcode';
import { qrCodePng, renderStatementsPdf, type StatementInput } from '../src/outreach/letter.ts';

const LETTERS = Number(process.env.BENCH_LETTERS ?? 300);

const input = (i: number): StatementInput => ({
  language: i % 3 === 0 ? 'es' : 'en',
  practice: { name: 'Riverside Family Medicine', phone: '(555) 010-0199' },
  statementDate: '2026-11-18',
  recipient: { firstName: 'Maria', addressLines: [`${i} Elm St`, 'Springfield, IL 62704'] },
  accountReference: 'ABCD1234',
  amountDue: { amount: 12_345 + i, currency: 'USD' },
  aging: { current: 100, days31to60: 200, days61to90: 0, over90: 12_045 + i },
  lines: Array.from({ length: 6 }, (_, j) => ({ date: `2026-0${j + 1}-01`, kind: 'charge' as const, amountCents: 1000 * (j + 1) })),
  payUrl: `https://pay.riverside.example/p/${String(i).padStart(32, 'x')}`,
  message: { heading: 'Statement', body: 'Dear Maria,\n\nPlease find your statement.' },
});
const inputs = Array.from({ length: LETTERS }, (_, i) => input(i));

await renderStatementsPdf(inputs.slice(0, 5)); // warm-up: fonts, JIT
let started = performance.now();
const pdf = await renderStatementsPdf(inputs);
const settleSeconds = (performance.now() - started) / 1000;

started = performance.now();
for (const { payUrl } of inputs) await QRCode.toBuffer(payUrl, { type: 'png', errorCorrectionLevel: 'M', margin: 1, width: 240 });
const peerQrSeconds = (performance.now() - started) / 1000;
started = performance.now();
for (const { payUrl } of inputs) qrCodePng(payUrl);
const ownQrSeconds = (performance.now() - started) / 1000;
// The peer renders the same pages but spends the qrcode package's PNG time on each code instead of ours.
const peerSeconds = settleSeconds - ownQrSeconds + peerQrSeconds;

const rate = LETTERS / settleSeconds;
process.stdout.write(`letters.print-batch: ${rate.toFixed(1)} letters/s (${(peerSeconds / settleSeconds).toFixed(2)}x vs qrcode PNG renderer)\n`);
process.stdout.write(`letters.pdf-size: ${(pdf.length / LETTERS / 1024).toFixed(1)} KiB/letter\n`);
process.stdout.write(`letters.peak-rss: ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB for ${LETTERS} letters\n`);
