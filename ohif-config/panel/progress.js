// @ts-check
// Download progress (DB.VI-CS.18) and retrieval errors (DB.VI-CO.27): one line per series,
// images received out of the total; errors stay, in French with their code, until the
// user closes the box, and a failure only the producing site can mend asks to contact
// it, by name (DB.VI-SO.28). Driven by ONE polling loop of /api/progress with backoff
// (backoff.js), which stops once every series is complete or failed, or when the
// session has ended (401: the caller says so, issue 14).
//
// When the box shows and goes does not depend on timing: it appears with the first
// answer that lists the exam's series (the BFF lists them from the grant, before OHIF
// asks for a frame), and it goes away once every series is complete AND the identity
// dialog has been closed, so that a fast exam does not come and go unseen while the
// dialog is up.
//
// Opened at series level (DB.VI-CS.05), the exam's other series come only when the
// user displays one ('on_demand'): the box may go once the rest is in, but the loop
// goes on, so that such a series, once asked, brings the box back with its progress or
// its error.
import { getProgress } from './api.js';
import { PROGRESS_BACKOFF, pollWithBackoff } from './backoff.js';
import { el, statusBox } from './dom.js';
import { contactSiteText, progressLine } from './format.js';

/** @typedef {import('./api.js').SeriesProgress} SeriesProgress */
/** @typedef {import('./api.js').ProgressAnswer} ProgressAnswer */
/** @typedef {import('./backoff.js').StepResult} StepResult */

/** How long "terminé" stays on screen once everything is in. */
const HIDE_AFTER_MS = 1500;
/** Answers after which nothing more will come: no session (any more) for this page. */
const FINAL_STATUSES = new Set([401, 403, 404]);

/**
 * Where the series stand.
 * @param {ReadonlyArray<SeriesProgress>} series
 * @returns {{finished: boolean, complete: boolean}} finished: no series still loading
 *   or still to be asked for; complete: none loading, none failed (a series waiting to
 *   be displayed aside)
 */
export function progressState(series) {
  const pending = series.some((s) => !s.complete && !s.error && !s.on_demand);
  const waiting = series.some((s) => s.on_demand && !s.error);
  const failed = series.some((s) => s.error);
  const settled = series.length > 0 && !pending;
  return { finished: settled && !waiting, complete: settled && !failed };
}

/**
 * What one answer of /api/progress means for the polling loop: 'stop' once every series
 * is finished or the session is gone, 'changed' when the series moved since `previous`
 * (the last answer's key), else 'same' (a failed request too: the loop backs off).
 * @param {string | null} previous
 * @param {ProgressAnswer} answer
 * @returns {{result: StepResult, key: string | null}}
 */
export function judgeAnswer(previous, answer) {
  if (!answer.ok) {
    return { result: FINAL_STATUSES.has(answer.status) ? 'stop' : 'same', key: previous };
  }
  const key = JSON.stringify(answer.series);
  if (progressState(answer.series).finished) return { result: 'stop', key };
  return { result: key === previous ? 'same' : 'changed', key };
}

/**
 * The sites to contact for the failed series only they can mend (DB.VI-SO.28), named
 * from their exams' KOS: null when no such failure, [] when the names are unknown.
 * @param {ReadonlyArray<SeriesProgress>} series
 * @param {(studyUid: string) => string} siteOf
 * @returns {string[] | null}
 */
export function sitesToContact(series, siteOf) {
  const failed = series.filter((s) => s.error && s.error.contact_site);
  if (!failed.length) return null;
  return [...new Set(failed.map((s) => siteOf(s.study_uid || '')).filter((name) => name))];
}

const fillBox = statusBox('drimbox-progress');
/** @type {HTMLElement | null} */
let box = null;

/**
 * @param {ReadonlyArray<SeriesProgress>} series
 * @param {(studyUid: string) => string} siteOf
 */
function render(series, siteOf) {
  const lines = series.map((s, index) => {
    const line = progressLine(s, index);
    if (line.error) return el('div', { class: 'drimbox-error', role: 'alert', text: line.text });
    const bar = el('span');
    bar.style.width = line.percent + '%'; // CSSOM: allowed by a CSP without 'unsafe-inline'
    return el('div', { class: 'drimbox-series', 'data-series': s.series_uid }, [
      el('div', { text: line.text }),
      el('div', { class: 'drimbox-bar' }, [bar]),
    ]);
  });
  const sites = sitesToContact(series, siteOf);
  if (sites) lines.push(el('div', { class: 'drimbox-contact', text: contactSiteText(sites.join(', ')) }));
  box = fillBox('Téléchargement des images', lines);
}

/**
 * Starts the progress box and its polling loop.
 * @param {object} options
 * @param {Promise<void>} options.identityDismissed resolves once the identity dialog has
 *   been closed (at once when there is none)
 * @param {(series: SeriesProgress[]) => void} options.onSeries called with each answer's series
 * @param {(studyUid: string) => string} options.siteOf the producing site of an exam
 * @param {() => void} options.onSessionEnd called when the BFF says the session has ended
 * @returns {Promise<void>} resolves when the loop has stopped
 */
export function startProgress({ identityDismissed, onSeries, siteOf, onSessionEnd }) {
  let key = /** @type {string | null} */ (null);
  let complete = false;
  let seen = false;
  let hiding = false;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  let hidden = false; // by this loop, not by the user
  const hideWhenDone = () => {
    if (!complete || !seen || hiding || !box) return;
    hiding = true;
    const done = box;
    timer = setTimeout(() => {
      hidden = !done.hidden;
      done.hidden = true;
    }, HIDE_AFTER_MS);
  };
  // A series asked after the rest was in (DB.VI-CS.05): the box this loop hid comes back.
  const showAgain = () => {
    if (complete || !hiding) return;
    clearTimeout(timer);
    hiding = false;
    if (hidden && box) box.hidden = false;
    hidden = false;
  };
  identityDismissed.then(() => {
    seen = true;
    hideWhenDone();
  });
  const loop = pollWithBackoff(async () => {
    const answer = await getProgress();
    if (answer.ok) onSeries(answer.series);
    if (answer.status === 401) onSessionEnd();
    const judged = judgeAnswer(key, answer);
    if (judged.key !== key && answer.series.length) render(answer.series, siteOf);
    key = judged.key;
    complete = answer.ok && progressState(answer.series).complete;
    if (answer.ok) showAgain();
    hideWhenDone();
    return judged.result;
  }, PROGRESS_BACKOFF);
  return loop.stopped;
}
