// @ts-check
// One polling loop with backoff: ask at once, again soon while the answers change, less
// and less often while they do not, and stop when the step says so or after a time
// limit. The clock is a parameter, so tests drive the loop without real timers.

/**
 * @typedef {object} Backoff
 * @property {number} min delay after an answer that changed something (ms)
 * @property {number} max longest delay while nothing changes (ms)
 * @property {number} factor growth of the delay at each answer that changed nothing
 * @property {number} limit no poll starts later than this after the first one (ms)
 */

/**
 * What one step of the loop reports.
 * @typedef {'changed' | 'same' | 'stop'} StepResult
 */

/**
 * @typedef {object} Clock
 * @property {(run: () => void, ms: number) => unknown} setTimeout
 * @property {() => number} now
 */

/** The progress polling (DB.VI-CS.18): 0.5 s while images arrive, up to 4 s when idle. */
export const PROGRESS_BACKOFF = Object.freeze({ min: 500, max: 4000, factor: 2, limit: 30 * 60 * 1000 });

/** @type {Clock} */
const REAL_CLOCK = {
  setTimeout: (run, ms) => globalThis.setTimeout(run, ms),
  now: () => Date.now(),
};

/**
 * The delay before the next poll.
 * @param {number} previous the last delay (0 before the second poll)
 * @param {boolean} changed whether the last answer changed anything
 * @param {Backoff} backoff
 * @returns {number}
 */
export function nextDelay(previous, changed, backoff) {
  if (changed || previous <= 0) return backoff.min;
  return Math.min(backoff.max, previous * backoff.factor);
}

/**
 * The delays while nothing changes, from the first one until they reach the maximum:
 * [500, 1000, 2000, 4000] for PROGRESS_BACKOFF.
 * @param {Backoff} backoff
 * @returns {number[]}
 */
export function idleDelays(backoff) {
  const delays = [nextDelay(0, false, backoff)];
  while (delays[delays.length - 1] < backoff.max) {
    delays.push(nextDelay(delays[delays.length - 1], false, backoff));
  }
  return delays;
}

/**
 * Runs `step` now, then after each answer with the backoff's delay, until it answers
 * 'stop', `stop()` is called or the time limit is reached. A step that throws counts as
 * an answer that changed nothing. One step at a time: the next is scheduled only once
 * the previous one has answered.
 * @param {() => Promise<StepResult>} step
 * @param {Backoff} backoff
 * @param {Clock} [clock]
 * @returns {{stop: () => void, stopped: Promise<void>}} `stopped` resolves when the loop ends
 */
export function pollWithBackoff(step, backoff, clock = REAL_CLOCK) {
  const started = clock.now();
  let delay = 0;
  let running = true;
  /** @type {() => void} */
  let ended = () => {};
  /** @type {Promise<void>} */
  const stopped = new Promise((resolve) => {
    ended = resolve;
  });
  const stop = () => {
    running = false;
    ended();
  };
  const poll = () => {
    if (!running) return;
    step()
      .catch(() => /** @type {StepResult} */ ('same'))
      .then((result) => {
        if (!running || result === 'stop') return stop();
        delay = nextDelay(delay, result === 'changed', backoff);
        if (clock.now() + delay - started > backoff.limit) return stop();
        clock.setTimeout(poll, delay);
      });
  };
  poll();
  return { stop, stopped };
}
