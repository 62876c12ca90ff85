import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { it } from 'node:test';
import { StepTimings } from '../../src/demo/timings.ts';

it('adds up wall and CPU time per step: waiting costs wall time only, computing costs CPU time too', async () => {
  const timings = new StepTimings();
  await timings.time('waits', () => sleep(60));
  await timings.time('computes', async () => {
    const until = performance.now() + 60;
    while (performance.now() < until) Math.sqrt(Math.random());
  });
  await timings.time('computes', async () => {});
  const [waits, computes] = ['waits', 'computes'].map((step) => timings.totals().find((t) => t.step === step)!);
  assert.equal(computes!.runs, 2);
  assert.ok(waits!.ms >= 55 && waits!.cpuMs < waits!.ms / 2, `sleeping 60 ms: ${waits!.ms} ms wall, ${waits!.cpuMs} ms CPU`);
  assert.ok(computes!.ms >= 55 && computes!.cpuMs >= 30, `computing 60 ms: ${computes!.ms} ms wall, ${computes!.cpuMs} ms CPU`);
  const text = timings.text();
  assert.match(text, /^Where the time went \(wall \d+\.\d s, CPU \d+\.\d s\):\n/);
  assert.match(text, /\n {2}computes +2 runs +0\.1 s +\d+\.\d % +0\.\d s CPU(\n|$)/);
  assert.match(text, /\n {2}waits +1 runs +0\.1 s +\d+\.\d % +0\.0 s CPU(\n|$)/);
});
