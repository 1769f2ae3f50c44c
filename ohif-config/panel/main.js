// @ts-check
// drimbox-viewer: what the BFF shows around the stock OHIF viewer (never inside it). The
// entry module, loaded by app-config.js as <script type="module">; the BFF serves it and
// its siblings at /drimbox/panel/ (a fixed list, bff/web/static.py). No inline script, no
// eval, no innerHTML: it works under a Content-Security-Policy of 'self'.
//
// On opening: the patient's identity from the exam's KOS (identity.js), the download
// (download.js), the export to the practice's PACS on the Consumer (pacs-export.js,
// DB.VI-CO.42) and the series choice (series-choice.js) in that dialog, the progress of
// the images (progress.js) and the non-diagnostic mention (mention.js). For the life of
// the page: the viewer tools (tools.js), the objects it cannot show (unsupported.js),
// OHIF's HTTP failures said in French with their code (http-errors.js, notice.js;
// DB.VI-SO.28) and the session's end (session.js, issue 14).
import { getProgress, getSession, studiesInUrl } from './api.js';
import { loadStylesheet, whenReady } from './dom.js';
import { addDownloads } from './download.js';
import { listenHttpErrors, withSeriesError } from './http-errors.js';
import { showIdentity } from './identity.js';
import { updateMention } from './mention.js';
import { showFailure, showUnavailable } from './notice.js';
import { addPacsExport } from './pacs-export.js';
import { startProgress } from './progress.js';
import { offerSeriesChoice } from './series-choice.js';
import { SESSION_LOOK_MS, endSession, lookAtSession, watchSession } from './session.js';
import { updateTools } from './tools.js';
import { watchUnsupported } from './unsupported.js';

/** How often the page watch looks at what OHIF does not announce (URL, viewports). */
const PAGE_WATCH_MS = 1000;
/** How long the page watch waits for OHIF's services to exist. */
const SERVICES_WAIT_MS = 120000;
/** OHIF 3.13.2's page for an exam it could not load (English, hard-coded). */
const OHIF_NOT_FOUND = '/notfoundstudy';
/** The viewer's URL as it opened (OHIF changes it, e.g. to its not-found page). */
const OPENED_AT = window.location.href;

/**
 * The producing site of an exam of the session (its KOS's Institution Name): the one
 * exam's when the study is not known.
 * @param {import('./api.js').SessionInfo} info
 * @returns {(studyUid: string) => string}
 */
function siteResolver(info) {
  const studies = info.studies || [];
  return (studyUid) => {
    const study = studies.find((s) => s.study_uid === studyUid) || (studies.length === 1 ? studies[0] : null);
    return (study && study.institution) || '';
  };
}

/** @type {Promise<import('./api.js').ProgressAnswer>} */
const NO_PROGRESS = Promise.resolve({ ok: false, status: 0, series: [] });

/**
 * OHIF's HTTP failures, said in French with their code (DB.VI-SO.28); a 401 is the
 * session's end (issue 14). A failure whose answer OHIF did not keep (a streamed frame)
 * is told by its series' error in the progress, asked once per series.
 * @param {(studyUid: string) => string} siteOf
 */
function sayHttpFailures(siteOf) {
  /** @type {Map<string, Promise<import('./api.js').ProgressAnswer>>} */
  const asked = new Map();
  listenHttpErrors((failure) => {
    if (failure.status === 401) {
      void lookAtSession();
      return;
    }
    let progress = NO_PROGRESS;
    if (!failure.code && failure.seriesUid) {
      progress = asked.get(failure.seriesUid) || getProgress();
      asked.set(failure.seriesUid, progress);
    }
    void progress.then((answer) => {
      const known = withSeriesError(failure, answer.series);
      showFailure(known, siteOf(known.studyUid));
    });
  });
}

/**
 * The session's part: identity, download, series choice, progress, mention; OHIF's
 * failures and the session's end.
 * @param {import('./api.js').SessionInfo} info
 */
function showSession(info) {
  const medicalDevice = !!info.medical_device;
  const siteOf = siteResolver(info);
  watchSession({ profile: info.profile, reopen: info.reopen, csrf: info.csrf || '' });
  sayHttpFailures(siteOf);
  const identity = showIdentity(info, studiesInUrl());
  if (identity) {
    addDownloads(info.studies || [], identity);
    addPacsExport(info.studies || [], identity);
    offerSeriesChoice(identity);
  }
  updateMention(medicalDevice, []);
  startProgress({
    identityDismissed: identity ? identity.dismissed : Promise.resolve(),
    onSeries: (series) => updateMention(medicalDevice, series),
    siteOf,
    onSessionEnd: endSession,
  });
}

/**
 * One watch, for the life of the page, of what OHIF changes without an event we can
 * listen to: its URL (it navigates without reloading), its volume viewports, and its
 * services appearing at start-up; and, once a minute, whether the session still lives.
 */
/**
 * @param {import('./api.js').SessionInfo | null} info the session, once known
 */
function watchPage(info) {
  const started = Date.now();
  let following = false;
  let sessionLooked = started;
  const look = () => {
    updateTools();
    if (!following && Date.now() - started < SERVICES_WAIT_MS) {
      following = watchUnsupported(window.services && window.services.displaySetService);
    }
    if (info && window.location.pathname === OHIF_NOT_FOUND) {
      const siteNames = (info.studies || []).map((s) => s.institution || '');
      showUnavailable({ siteNames, retryUrl: OPENED_AT });
    }
    if (Date.now() - sessionLooked >= SESSION_LOOK_MS) {
      sessionLooked = Date.now();
      void lookAtSession();
    }
  };
  look();
  setInterval(look, PAGE_WATCH_MS);
}

function start() {
  const session = getSession().catch(() => null);
  // Everything waits for the stylesheet (loaded or failed): nothing shows unstyled.
  loadStylesheet(new URL('panel.css', import.meta.url).href)
    .then(() => session)
    .then((info) => {
      watchPage(info);
      if (info) showSession(info);
    })
    .catch(() => {
      /* no session panel: the viewer still works */
    });
}

whenReady(start);
