// @ts-check
// The session's end while the viewer is open (issue 14). The BFF answers 401 E401 once
// the session has expired (idle or absolute limit) or was ended (a logout in another
// tab): to /api/progress, to OHIF's DICOMweb requests (reported through app-config.js's
// httpErrorHandler) and to GET /api/session/state, which the page asks when the user
// comes back to the tab and once a minute, without that counting as activity (an idle
// session still ends). Then the viewer says so, in French, over the images (hidden: a
// shared computer), says how to open the exam again, offers the logout at the identity
// provider, and stops what it can of the image requests (cornerstone's request queues;
// whatever OHIF still asks gets a fast 401, before anything is fetched).
import { getSessionState } from './api.js';
import { showSessionEnd } from './notice.js';

/** How often the page watch asks whether the session still lives. */
export const SESSION_LOOK_MS = 60 * 1000;
/** cornerstone's request queues (its RequestType values). */
const REQUEST_TYPES = ['interaction', 'thumbnail', 'prefetch', 'compute'];

/** @typedef {import('./notice.js').SessionFacts} SessionFacts */
/** @typedef {{clearRequestStack?: (type: string) => void}} RequestPool */

/** @type {SessionFacts | null} */
let facts = null;
let ended = false;
/** @type {Promise<void> | null} */
let asking = null;

/**
 * Empties cornerstone's queues of image requests not yet sent (best effort: what is
 * missing is skipped).
 * @param {{imageLoadPoolManager?: RequestPool, imageRetrievalPoolManager?: RequestPool} | undefined} cornerstone
 * @returns {number} how many queues were emptied
 */
export function stopImageRequests(cornerstone) {
  let emptied = 0;
  const pools = cornerstone ? [cornerstone.imageLoadPoolManager, cornerstone.imageRetrievalPoolManager] : [];
  for (const pool of pools) {
    if (!pool || typeof pool.clearRequestStack !== 'function') continue;
    for (const type of REQUEST_TYPES) {
      try {
        pool.clearRequestStack(type);
        emptied += 1;
      } catch {
        /* an unknown type in this version: the others still go */
      }
    }
  }
  return emptied;
}

/** The session has ended: say so (once) and stop asking for images. */
export function endSession() {
  if (ended || !facts) return;
  ended = true;
  stopImageRequests(window.cornerstone);
  showSessionEnd(facts);
}

/**
 * Asks the BFF whether the session still lives (one question at a time); ends it in the
 * viewer on 401. Any other answer (no network, a 5xx) changes nothing.
 * @returns {Promise<void>}
 */
export function lookAtSession() {
  if (ended || !facts) return Promise.resolve();
  if (!asking) {
    asking = getSessionState().then((status) => {
      asking = null;
      if (status === 401) endSession();
    });
  }
  return asking;
}

/**
 * Follows the session of this page from now on.
 * @param {SessionFacts} session what the page knew of it when it opened (GET /api/session)
 */
export function watchSession(session) {
  facts = { profile: session.profile, reopen: session.reopen, csrf: session.csrf };
  window.addEventListener('focus', () => void lookAtSession());
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') void lookAtSession();
  });
}
