// @ts-check
// What the progress loop makes of each answer of /api/progress (panel/progress.js), and
// the non-diagnostic mention that follows it (panel/mention.js).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { MENTION_TEXTS, mentionShown, mentionText } from '../panel/mention.js';
import { judgeAnswer, progressState, sitesToContact } from '../panel/progress.js';

/** @typedef {import('../panel/api.js').SeriesProgress} SeriesProgress */

/**
 * @param {Partial<SeriesProgress>} fields
 * @returns {SeriesProgress}
 */
const series = (fields) => ({ series_uid: '1', received: 0, total: 10, complete: false, ...fields });
const loading = series({ received: 3 });
const done = series({ series_uid: '2', received: 10, complete: true });
const failed = series({ series_uid: '3', error: { code: 'E506', message: 'Flux interrompu.' } });
const onDemand = series({ series_uid: '4', on_demand: true });

/** @param {SeriesProgress[]} list */
const ok = (list) => ({ ok: true, status: 200, series: list });

describe('progressState', () => {
  it('is finished when no series is still loading, complete when none failed', () => {
    assert.deepEqual(progressState([done]), { finished: true, complete: true });
    assert.deepEqual(progressState([done, failed]), { finished: true, complete: false });
    assert.deepEqual(progressState([done, loading]), { finished: false, complete: false });
    assert.deepEqual(progressState([failed, loading]), { finished: false, complete: false });
  });
  it('is not finished before the BFF lists any series', () => {
    assert.deepEqual(progressState([]), { finished: false, complete: false });
  });
  it('is complete, not finished, while a series waits to be displayed (DB.VI-CS.05)', () => {
    assert.deepEqual(progressState([done, onDemand]), { finished: false, complete: true });
    assert.deepEqual(progressState([loading, onDemand]), { finished: false, complete: false });
    assert.deepEqual(progressState([failed, onDemand]), { finished: false, complete: false });
  });
});

describe('judgeAnswer', () => {
  it('reports a change, then the same answer as unchanged', () => {
    const first = judgeAnswer(null, ok([loading]));
    assert.equal(first.result, 'changed');
    assert.equal(judgeAnswer(first.key, ok([loading])).result, 'same');
    assert.equal(judgeAnswer(first.key, ok([series({ received: 4 })])).result, 'changed');
  });
  it('stops once every series is complete or failed', () => {
    assert.equal(judgeAnswer(null, ok([done])).result, 'stop');
    assert.equal(judgeAnswer(null, ok([done, failed])).result, 'stop');
    assert.equal(judgeAnswer(null, ok([failed, loading])).result, 'changed');
  });
  it('goes on while a series waits to be displayed: it may be asked for later', () => {
    const first = judgeAnswer(null, ok([done, onDemand]));
    assert.equal(first.result, 'changed');
    assert.equal(judgeAnswer(first.key, ok([done, onDemand])).result, 'same');
    assert.equal(judgeAnswer(first.key, ok([done, series({ series_uid: '4', received: 1 })])).result, 'changed');
  });
  it('goes on, backing off, while no series is listed yet', () => {
    const empty = judgeAnswer(null, ok([]));
    assert.equal(empty.result, 'changed');
    assert.equal(judgeAnswer(empty.key, ok([])).result, 'same');
  });
  it('stops when the session is gone, backs off on any other failure', () => {
    for (const status of [401, 403, 404]) {
      assert.equal(judgeAnswer('k', { ok: false, status, series: [] }).result, 'stop', String(status));
    }
    for (const status of [0, 500, 502, 503]) {
      const judged = judgeAnswer('k', { ok: false, status, series: [] });
      assert.deepEqual(judged, { result: 'same', key: 'k' }, String(status));
    }
  });
});

describe('mentionShown (DB.VI-CS.26)', () => {
  it('always shows when the deployment is not a medical device', () => {
    assert.equal(mentionShown(false, [done]), true);
    assert.equal(mentionShown(false, []), true);
  });
  it('on a medical device, shows for lossy images and while nothing is known', () => {
    assert.equal(mentionShown(true, []), true);
    assert.equal(mentionShown(true, [done, series({ lossy: true })]), true);
    assert.equal(mentionShown(true, [done, series({ lossy: false })]), false);
  });
});

describe('mentionText (DB.VI-CS.26)', () => {
  it('names why the viewer is not for diagnosis, never a wrong reason', () => {
    assert.equal(mentionText(false, [done, series({ lossy: true })]), MENTION_TEXTS.lossy);
    assert.equal(mentionText(true, [series({ lossy: true })]), MENTION_TEXTS.lossy);
    // Lossless images on a deployment that is not a medical device: not "avec perte".
    assert.equal(mentionText(false, [done, series({ lossy: false })]), MENTION_TEXTS.device);
    assert.equal(mentionText(false, []), MENTION_TEXTS.device);
    assert.equal(mentionText(true, []), MENTION_TEXTS.unknown);
  });
});

describe('sitesToContact (DB.VI-SO.28)', () => {
  const siteOf = (/** @type {string} */ uid) => ({ '1.1': 'Centre A', '1.2': 'Centre B' })[uid] || '';
  const pacsDown = { code: 'E503', message: 'Injoignable.', contact_site: true };
  it("names, once each, the sites of the failed series only they can mend", () => {
    const list = [
      series({ study_uid: '1.1', error: pacsDown }),
      series({ study_uid: '1.1', series_uid: '2', error: pacsDown }),
      series({ study_uid: '1.2', series_uid: '3', error: pacsDown }),
      done,
    ];
    assert.deepEqual(sitesToContact(list, siteOf), ['Centre A', 'Centre B']);
  });
  it('is null without such a failure, [] when the site is not known', () => {
    assert.equal(sitesToContact([done, loading, failed], siteOf), null);
    assert.deepEqual(sitesToContact([series({ study_uid: '9.9', error: pacsDown })], siteOf), []);
  });
});
