// @ts-check
// The series to display first (issue 6: DB.VI-SO.189). When the exam has several series,
// the identity dialog shown at opening also offers "Choisir la série à afficher en
// premier": one button per series (number, description, modality, images), from the
// facade's own series search (the series of the exam the report names, as granted from
// its KOS; for the Consumer, the series of the KOS itself). A choice tells the BFF to
// retrieve that series first (POST /api/priority/<study>/<series>, same access check as
// the images) and reopens the viewer with OHIF's initialSeriesInstanceUID, which shows it
// first and asks its images first. The identity dialog is then not shown a second time
// for that reopening (the user just saw it).
import { preferSeries, seriesOf, studiesInUrl } from './api.js';
import { el } from './dom.js';
import { bySeriesNumber, seriesChoiceLabel, tagValue } from './format.js';

/** @typedef {import('./api.js').DicomJson} DicomJson */
/** @typedef {import('./identity.js').IdentityDialog} IdentityDialog */

const CHOSEN_KEY = 'drimbox-series-chosen';
/** The choice never waits on the BFF for longer than this. */
const GO_AFTER_MS = 1500;

/**
 * The viewer's URL showing `seriesUid` first.
 * @param {string} studyUid
 * @param {string} seriesUid
 * @returns {string}
 */
export function viewerUrlFor(studyUid, seriesUid) {
  return (
    '/viewer?StudyInstanceUIDs=' + encodeURIComponent(studyUid) +
    '&initialSeriesInstanceUID=' + encodeURIComponent(seriesUid)
  );
}

/**
 * @param {string} studyUid
 * @param {string} seriesUid
 * @param {string} csrf
 */
function choose(studyUid, seriesUid, csrf) {
  const url = viewerUrlFor(studyUid, seriesUid);
  let gone = false;
  const go = () => {
    if (gone) return;
    gone = true;
    window.location.assign(url);
  };
  try {
    window.sessionStorage.setItem(CHOSEN_KEY, studyUid + '|' + seriesUid);
  } catch {
    /* private mode */
  }
  preferSeries(studyUid, seriesUid, csrf).then(go, go);
  setTimeout(go, GO_AFTER_MS);
}

/**
 * @param {IdentityDialog} identity
 * @param {string} studyUid
 * @param {string} current the series shown first now ('' for OHIF's own choice)
 * @param {DicomJson[]} found the exam's series
 */
function addChoice(identity, studyUid, current, found) {
  const rows = found.filter((row) => tagValue(row, '0020000E'));
  if (rows.length < 2) return;
  rows.sort(bySeriesNumber);
  const buttons = rows.map((row) => {
    const seriesUid = String(tagValue(row, '0020000E'));
    const label = seriesChoiceLabel(row) + (seriesUid === current ? ' — affichée' : '');
    const button = el('button', {
      type: 'button',
      class: 'drimbox-series-choice',
      'data-series-uid': seriesUid,
      'aria-current': seriesUid === current ? 'true' : undefined,
      text: label,
    });
    button.addEventListener('click', () => choose(studyUid, seriesUid, identity.csrf));
    return el('li', {}, [button]);
  });
  const section = el('section', { id: 'drimbox-series-choice', 'aria-labelledby': 'drimbox-series-choice-title' }, [
    el('h3', { id: 'drimbox-series-choice-title', text: 'Choisir la série à afficher en premier' }),
    el('ul', {}, buttons),
  ]);
  identity.card.insertBefore(section, identity.actions);
}

/**
 * Offers the choice in the identity dialog, for one exam in the viewer; closes the dialog
 * when the page is the reopening that follows a choice.
 * @param {IdentityDialog} identity
 */
export function offerSeriesChoice(identity) {
  const studies = studiesInUrl();
  if (window.location.pathname !== '/viewer' || studies.length !== 1) return;
  const current = new URLSearchParams(window.location.search).get('initialSeriesInstanceUID') || '';
  let chosen = null;
  try {
    chosen = window.sessionStorage.getItem(CHOSEN_KEY);
    window.sessionStorage.removeItem(CHOSEN_KEY);
  } catch {
    /* private mode */
  }
  if (current && chosen === studies[0] + '|' + current) identity.hide();
  seriesOf(studies[0])
    .then((found) => addChoice(identity, studies[0], current, found))
    .catch(() => {
      /* no choice offered: the viewer shows its first series */
    });
}
