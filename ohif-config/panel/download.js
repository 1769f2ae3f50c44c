// @ts-check
// Study download (DB.VI-SO.176): one link per granted exam to /api/download/<study>, a
// ZIP (IHE PDI, DICOMDIR) the browser saves with its own progress. A HEAD request first:
// the button only appears for exams the BFF can offer here (not, for now, one opened
// from a remote Source). The first exam's link also stays on the page, bottom left.
import { canDownload, downloadUrl } from './api.js';
import { el } from './dom.js';
import { DOWNLOAD_HINT, downloadLabel } from './format.js';

/** @typedef {import('./api.js').Study} Study */
/** @typedef {import('./identity.js').IdentityDialog} IdentityDialog */

/**
 * @param {Study} study
 * @param {boolean} several
 * @param {string} [id]
 * @returns {HTMLAnchorElement}
 */
function downloadLink(study, several, id) {
  return el('a', {
    class: 'drimbox-download',
    href: downloadUrl(study.study_uid),
    download: '',
    title: DOWNLOAD_HINT,
    'data-study': study.study_uid,
    text: downloadLabel(study, several),
    id,
  });
}

/**
 * Adds the download links of the session's exams to the identity dialog.
 * @param {ReadonlyArray<Study>} studies every exam granted to the session
 * @param {IdentityDialog} identity
 */
export function addDownloads(studies, identity) {
  const several = studies.length > 1;
  studies.forEach((study, index) => {
    canDownload(study.study_uid)
      .then((offered) => {
        if (!offered) return;
        const { actions, list } = identity;
        actions.insertBefore(downloadLink(study, several), actions.firstChild);
        if (index === 0) {
          list.after(el('p', { class: 'drimbox-hint', text: DOWNLOAD_HINT }));
          document.body.appendChild(downloadLink(study, several, 'drimbox-download-fixed'));
        }
      })
      .catch(() => {
        /* no download button: the viewer still works */
      });
  });
}
