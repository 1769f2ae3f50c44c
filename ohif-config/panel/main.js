// @ts-check
// drimbox-viewer: what the BFF shows around the stock OHIF viewer (never inside it). The
// entry module, loaded by app-config.js as <script type="module">; the BFF serves it and
// its siblings at /drimbox/panel/ (a fixed list, bff/web/static.py). No inline script, no
// eval, no innerHTML: it works under a Content-Security-Policy of 'self'.
//
// On opening: the patient's identity from the exam's KOS (identity.js), the download
// (download.js) and the series choice (series-choice.js) in that dialog, the progress of
// the images (progress.js) and the non-diagnostic mention (mention.js). For the life of
// the page: the viewer tools (tools.js) and the objects it cannot show (unsupported.js).
import { getSession, studiesInUrl } from './api.js';
import { loadStylesheet, whenReady } from './dom.js';
import { addDownloads } from './download.js';
import { showIdentity } from './identity.js';
import { updateMention } from './mention.js';
import { startProgress } from './progress.js';
import { offerSeriesChoice } from './series-choice.js';
import { updateTools } from './tools.js';
import { watchUnsupported } from './unsupported.js';

/** How often the page watch looks at what OHIF does not announce (URL, viewports). */
const PAGE_WATCH_MS = 1000;
/** How long the page watch waits for OHIF's services to exist. */
const SERVICES_WAIT_MS = 120000;

/**
 * The session's part: identity, download, series choice, progress, mention.
 * @param {import('./api.js').SessionInfo} info
 */
function showSession(info) {
  const medicalDevice = !!info.medical_device;
  const identity = showIdentity(info, studiesInUrl());
  if (identity) {
    addDownloads(info.studies || [], identity);
    offerSeriesChoice(identity);
  }
  updateMention(medicalDevice, []);
  startProgress({
    identityDismissed: identity ? identity.dismissed : Promise.resolve(),
    onSeries: (series) => updateMention(medicalDevice, series),
  });
}

/**
 * One watch, for the life of the page, of what OHIF changes without an event we can
 * listen to: its URL (it navigates without reloading), its volume viewports, and its
 * services appearing at start-up.
 */
function watchPage() {
  const started = Date.now();
  let following = false;
  const look = () => {
    updateTools();
    if (!following && Date.now() - started < SERVICES_WAIT_MS) {
      following = watchUnsupported(window.services && window.services.displaySetService);
    }
  };
  look();
  setInterval(look, PAGE_WATCH_MS);
}

function start() {
  const session = getSession().catch(() => null);
  // Everything waits for the stylesheet (loaded or failed): nothing shows unstyled.
  loadStylesheet(new URL('panel.css', import.meta.url).href)
    .then(() => {
      watchPage();
      return session;
    })
    .then((info) => {
      if (info) showSession(info);
    })
    .catch(() => {
      /* no session panel: the viewer still works */
    });
}

whenReady(start);
