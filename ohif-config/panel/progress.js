// @ts-check
// Download progress (DB.VI-CS.18) and retrieval errors (DB.VI-CO.27): one line per series,
// images received out of the total; errors stay, in French with their code, until the
// user closes the box. Polls /api/progress while images load.
import { getProgress } from './api.js';
import { el, statusBox } from './dom.js';
import { progressLine } from './format.js';

/** @typedef {import('./api.js').SeriesProgress} SeriesProgress */

/** How long "terminé" stays on screen once everything is in. */
const HIDE_AFTER_MS = 1500;
const POLL_MS = 700;
const RETRY_MS = 2000;
const POLL_FOR_MS = 30 * 60 * 1000;

const fillBox = statusBox('drimbox-progress');
/** @type {HTMLElement | null} */
let box = null;

/** @param {ReadonlyArray<SeriesProgress>} series */
function render(series) {
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
  box = fillBox('Téléchargement des images', lines);
}

/**
 * Starts the progress box and its polling.
 * @param {object} options
 * @param {(series: SeriesProgress[]) => void} options.onSeries called with each answer's series
 */
export function startProgress({ onSeries }) {
  const startedAt = Date.now();
  const poll = () => {
    getProgress().then((answer) => {
      if (!answer.ok && answer.status === 0) {
        setTimeout(poll, RETRY_MS);
        return;
      }
      const series = answer.series;
      onSeries(series);
      if (series.length) render(series);
      const pending = series.some((s) => !s.complete && !s.error);
      const failed = series.some((s) => s.error);
      const done = box;
      if (series.length && !pending && !failed && done) {
        setTimeout(() => {
          done.hidden = true;
        }, HIDE_AFTER_MS);
        return;
      }
      if ((pending || !series.length) && Date.now() - startedAt < POLL_FOR_MS) setTimeout(poll, POLL_MS);
    });
  };
  poll();
}
