// @ts-check
// The one polling loop (panel/backoff.js), driven by a fake clock: no real timer, no sleep.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { PROGRESS_BACKOFF, idleDelays, nextDelay, pollWithBackoff } from '../panel/backoff.js';

/** @typedef {import('../panel/backoff.js').StepResult} StepResult */

/** A clock whose timers run only when the test says so. */
function fakeClock() {
  /** @type {Array<{at: number, run: () => void}>} */
  const timers = [];
  const clock = {
    time: 0,
    /** @type {number[]} the delay of each timer set, in order */
    delays: /** @type {number[]} */ ([]),
    /** @param {() => void} run @param {number} ms */
    setTimeout(run, ms) {
      clock.delays.push(ms);
      timers.push({ at: clock.time + ms, run });
    },
    now: () => clock.time,
    /** Runs the next timer, moving the time to it; false when none is set. */
    next() {
      const timer = timers.shift();
      if (!timer) return false;
      clock.time = timer.at;
      timer.run();
      return true;
    },
  };
  return clock;
}

/** Lets the loop's promise callbacks run (no time passes). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/**
 * A step answering `results` in turn, counting its calls.
 * @param {Array<StepResult | Error>} results
 */
function scripted(results) {
  const step = async () => {
    step.calls += 1;
    const result = results.shift();
    if (result instanceof Error) throw result;
    return result || 'same';
  };
  step.calls = 0;
  return step;
}

describe('nextDelay', () => {
  it('starts fast, doubles while nothing changes, up to the maximum', () => {
    assert.deepEqual(idleDelays(PROGRESS_BACKOFF), [500, 1000, 2000, 4000]);
    assert.equal(nextDelay(4000, false, PROGRESS_BACKOFF), 4000);
  });
  it('is fast again as soon as something changes', () => {
    assert.equal(nextDelay(4000, true, PROGRESS_BACKOFF), 500);
    assert.equal(nextDelay(0, false, PROGRESS_BACKOFF), 500);
  });
  it('reaches a maximum that is not a power of the factor', () => {
    assert.deepEqual(idleDelays({ min: 300, max: 1000, factor: 2, limit: 1e9 }), [300, 600, 1000]);
  });
});

describe('pollWithBackoff', () => {
  it('asks at once, then backs off while nothing changes, and is fast again on a change', async () => {
    const clock = fakeClock();
    const step = scripted(['changed', 'same', 'same', 'same', 'changed', 'same']);
    pollWithBackoff(step, PROGRESS_BACKOFF, clock);
    assert.equal(step.calls, 1);
    for (let i = 0; i < 5; i++) {
      await settle();
      assert.ok(clock.next());
    }
    await settle();
    assert.equal(step.calls, 6);
    assert.deepEqual(clock.delays, [500, 1000, 2000, 4000, 500, 1000]);
  });

  it('stops when the step says so', async () => {
    const clock = fakeClock();
    const step = scripted(['changed', 'stop']);
    const loop = pollWithBackoff(step, PROGRESS_BACKOFF, clock);
    await settle();
    assert.ok(clock.next());
    await loop.stopped;
    assert.equal(clock.next(), false, 'no poll after stop');
    assert.equal(step.calls, 2);
  });

  it('backs off after a step that fails, and goes on', async () => {
    const clock = fakeClock();
    const step = scripted([new Error('network'), new Error('network'), 'stop']);
    const loop = pollWithBackoff(step, PROGRESS_BACKOFF, clock);
    await settle();
    assert.ok(clock.next());
    await settle();
    assert.ok(clock.next());
    await loop.stopped;
    assert.deepEqual(clock.delays, [500, 1000]);
  });

  it('stops at the time limit', async () => {
    const clock = fakeClock();
    const step = scripted([]); // always 'same'
    const loop = pollWithBackoff(step, { min: 100, max: 400, factor: 2, limit: 1000 }, clock);
    while (step.calls < 100) {
      await settle();
      if (!clock.next()) break;
    }
    await loop.stopped;
    // 0, 100, 300, 700: the next poll (1100) would start past the limit.
    assert.deepEqual(clock.delays, [100, 200, 400]);
    assert.equal(step.calls, 4);
  });

  it('stops when asked, even with a step under way', async () => {
    const clock = fakeClock();
    const step = scripted(['changed']);
    const loop = pollWithBackoff(step, PROGRESS_BACKOFF, clock);
    loop.stop();
    await loop.stopped;
    await settle();
    assert.deepEqual(clock.delays, []);
    assert.equal(step.calls, 1);
  });
});
