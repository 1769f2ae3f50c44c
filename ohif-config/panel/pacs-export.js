// @ts-check
// Export to the practice's PACS (DB.VI-CO.42), on the Consumer viewer only: the BFF
// offers it (GET /api/pacs-export/<study>) for an exam opened from a KOS when the
// operator configured destinations; elsewhere it answers 404 and no button shows. The
// button "Exporter vers le PACS" (in the identity dialog and fixed, bottom left) opens a
// box: the destination, the whole exam or one series (the one shown, pre-selected), then
// "Envoyer". The export runs on the server; the box polls how it stands and says it in
// French (sent / total, then the result or the failure with its code).
import { getPacsExport, seriesOf, startPacsExport } from './api.js';
import { el } from './dom.js';
import { bySeriesNumber, seriesChoiceLabel, tagValue } from './format.js';

/** @typedef {import('./api.js').Study} Study */
/** @typedef {import('./api.js').PacsExportJob} PacsExportJob */
/** @typedef {import('./identity.js').IdentityDialog} IdentityDialog */

export const EXPORT_LABEL = 'Exporter vers le PACS';
export const EXPORT_HINT =
  "Envoie les images de l'examen (ou d'une série), sans perte, telles que le site " +
  'producteur les a enregistrées, au PACS ou à la station de travail de votre cabinet.';
export const WHOLE_EXAM = "Tout l'examen";
/** How often the box asks how the export stands while it runs. */
const POLL_MS = 1000;
/** Answers missed in a row before the box stops following the export. */
const MAX_MISSES = 30;
export const LOST_TEXT =
  "L'avancement de l'export n'est plus disponible ; l'envoi se poursuit sur le serveur. " +
  'Vérifiez le résultat dans votre PACS.';

/**
 * The line the box shows for a job: its French message, with its code when it failed.
 * @param {PacsExportJob} job
 * @returns {string}
 */
export function exportStatusText(job) {
  if (job.state === 'failed' && job.code) return job.code + ' — ' + job.message;
  return job.message;
}

/**
 * The line the box shows when the BFF refused to start the export.
 * @param {{status: number, code?: string, message?: string}} refusal
 * @returns {string}
 */
export function refusalText(refusal) {
  if (!refusal.status) return "Le serveur n'a pas répondu. Veuillez réessayer.";
  const message = refusal.message || "L'export n'a pas pu démarrer.";
  return refusal.code ? refusal.code + ' — ' + message : message;
}

/**
 * The series the user is looking at (OHIF's active viewport), or ''.
 * @returns {string}
 */
export function shownSeries() {
  const services = window.services;
  const grid = services && services.viewportGridService;
  const displaySets = services && services.displaySetService;
  if (!grid || !displaySets || !displaySets.getDisplaySetByUID) return '';
  try {
    const state = grid.getState();
    const viewport = state.viewports && state.activeViewportId
      ? state.viewports.get(state.activeViewportId)
      : undefined;
    const uid = ((viewport && viewport.displaySetInstanceUIDs) || [])[0];
    const displaySet = uid ? displaySets.getDisplaySetByUID(uid) : undefined;
    return (displaySet && displaySet.SeriesInstanceUID) || '';
  } catch {
    return '';
  }
}

/**
 * @param {string} label
 * @param {HTMLElement} control
 * @returns {HTMLElement}
 */
function field(label, control) {
  return el('label', { class: 'drimbox-field' }, [el('span', { text: label }), control]);
}

/**
 * The export box of one exam (made on first use).
 * @param {Study} study
 * @param {{id: string, name: string}[]} destinations
 * @param {string} csrf
 * @returns {{open: () => void, follow: (job: PacsExportJob) => void}}
 */
function exportBox(study, destinations, csrf) {
  const box = el('section', {
    id: 'drimbox-pacs-export',
    class: 'drimbox-box',
    role: 'dialog',
    'aria-labelledby': 'drimbox-pacs-export-title',
  });
  box.hidden = true;
  const destination = el('select', { name: 'destination' });
  for (const d of destinations) destination.appendChild(el('option', { value: d.id, text: d.name }));
  const scope = el('select', { name: 'series' }, [el('option', { value: '', text: WHOLE_EXAM })]);
  const status = el('p', { class: 'drimbox-pacs-export-status', role: 'status', 'aria-live': 'polite' });
  const send = el('button', { type: 'button', class: 'drimbox-download', text: 'Envoyer' });
  const close = el('button', { type: 'button', title: 'Fermer', text: '×' });
  close.addEventListener('click', () => {
    box.hidden = true;
  });
  box.append(
    close,
    el('h3', { id: 'drimbox-pacs-export-title', text: EXPORT_LABEL }),
    el('p', { class: 'drimbox-hint', text: EXPORT_HINT }),
    field('Destination', destination),
    field('Images', scope),
    el('div', { class: 'drimbox-actions' }, [send]),
    status,
  );
  document.body.appendChild(box);
  let seriesListed = false;
  let polling = false;

  /** @param {PacsExportJob} job */
  const show = (job) => {
    status.textContent = exportStatusText(job);
    status.dataset.state = job.state;
    send.disabled = job.state === 'running';
  };

  /** @param {PacsExportJob} job */
  const follow = (job) => {
    show(job);
    if (job.state !== 'running' || polling) return;
    polling = true;
    let misses = 0;
    const timer = setInterval(() => {
      void getPacsExport(study.study_uid).then((offer) => {
        const current = offer && offer.job;
        if (!current) {
          // No answer (network, or the session ended: session.js says so): give up
          // following after a while; the export goes on on the server.
          misses += 1;
          if (misses >= MAX_MISSES) {
            clearInterval(timer);
            polling = false;
            status.textContent = LOST_TEXT;
          }
          return;
        }
        misses = 0;
        show(current);
        if (current.state !== 'running') {
          clearInterval(timer);
          polling = false;
        }
      });
    }, POLL_MS);
  };

  send.addEventListener('click', () => {
    send.disabled = true;
    status.textContent = 'Démarrage de l’export…';
    status.dataset.state = 'running';
    void startPacsExport(study.study_uid, destination.value, scope.value, csrf).then((answer) => {
      if (answer.ok && answer.job) {
        follow(answer.job);
        return;
      }
      status.textContent = refusalText(answer);
      status.dataset.state = 'failed';
      send.disabled = false;
    });
  });

  const open = () => {
    box.hidden = false;
    const current = shownSeries();
    if (!seriesListed) {
      seriesListed = true;
      void seriesOf(study.study_uid).then((rows) => {
        const images = rows.filter((row) => tagValue(row, '00080060') !== 'KO');
        for (const row of [...images].sort(bySeriesNumber)) {
          const uid = String(tagValue(row, '0020000E') || '');
          if (uid) scope.appendChild(el('option', { value: uid, text: seriesChoiceLabel(row) }));
        }
        if (current) scope.value = current;
        if (scope.value !== current) scope.value = '';
      });
    } else if (current) {
      scope.value = current;
    }
    destination.focus();
  };
  return { open, follow };
}

/**
 * Adds "Exporter vers le PACS" for each exam the BFF offers it for.
 * @param {ReadonlyArray<Study>} studies every exam granted to the session
 * @param {IdentityDialog} identity (and the session's CSRF token)
 */
export function addPacsExport(studies, identity) {
  studies.forEach((study, index) => {
    void getPacsExport(study.study_uid).then((offer) => {
      if (!offer || !offer.destinations.length) return;
      const box = exportBox(study, offer.destinations, identity.csrf);
      /** @param {string} [id] */
      const button = (id) => {
        const b = el('button', {
          type: 'button',
          class: 'drimbox-download drimbox-pacs-export',
          title: EXPORT_HINT,
          'data-study': study.study_uid,
          text: EXPORT_LABEL,
          id,
        });
        b.addEventListener('click', () => {
          identity.hide();
          box.open();
        });
        return b;
      };
      identity.actions.insertBefore(button(), identity.actions.firstChild);
      if (index === 0) document.body.appendChild(button('drimbox-pacs-export-fixed'));
      if (offer.job && offer.job.state === 'running') box.follow(offer.job);
    });
  });
}
