// @ts-check
// The patient's identity on opening (DB.VI-CS.29): the INS identity traits and the
// institution from the exam's KOS, in a dialog shown over the viewer, reachable again
// at any time from the "Patient : ..." badge.
import { el } from './dom.js';
import { examHeading, identityFields, patientBadge } from './format.js';

/** @typedef {import('./api.js').SessionInfo} SessionInfo */
/** @typedef {import('./api.js').Study} Study */

/**
 * The identity dialog, for the parts that add to it (download, series choice) and for
 * the progress box (which stays up until the dialog has been closed once).
 * @typedef {object} IdentityDialog
 * @property {HTMLElement} dialog
 * @property {HTMLElement} card
 * @property {HTMLElement} list the identity block(s)
 * @property {HTMLElement} actions the buttons row
 * @property {string} csrf the session's CSRF token
 * @property {() => void} hide closes the dialog (the badge opens it again)
 * @property {Promise<void>} dismissed resolves when the dialog is closed the first time
 */

/**
 * The exams this page shows (its URL), in the URL's order; the first granted one if the
 * URL names none of them. Two exams side by side: one identity block each (DB.VI-CS.29,
 * .35): the identity shown is always that of the images on screen.
 * @param {ReadonlyArray<Study>} granted
 * @param {ReadonlyArray<string>} inUrl
 * @returns {Study[]}
 */
export function shownStudies(granted, inUrl) {
  const shown = inUrl
    .map((uid) => granted.find((s) => s.study_uid === uid))
    .filter((s) => s !== undefined);
  return shown.length ? shown : granted.slice(0, 1);
}

/**
 * @param {Study} study
 * @returns {Array<HTMLElement>}
 */
function identityRows(study) {
  return identityFields(study).map(([label, value]) =>
    el('div', { class: 'drimbox-row' }, [el('dt', { text: label }), el('dd', { text: value })])
  );
}

/**
 * @param {ReadonlyArray<Study>} studies
 * @returns {HTMLElement}
 */
function identityList(studies) {
  if (studies.length === 1) {
    return el('dl', { class: 'drimbox-identities' }, identityRows(studies[0]));
  }
  const blocks = studies.flatMap((study, index) => [
    el('h3', { class: 'drimbox-exam', text: examHeading(study, index) }),
    el('dl', {}, identityRows(study)),
  ]);
  return el('div', { class: 'drimbox-identities' }, blocks);
}

/**
 * Shows the identity dialog and the badge; null when the session shows no exam here.
 * @param {SessionInfo} info
 * @param {ReadonlyArray<string>} inUrl the exams in the page's URL
 * @returns {IdentityDialog | null}
 */
export function showIdentity(info, inUrl) {
  const studies = shownStudies(info.studies || [], inUrl);
  const study = studies[0];
  if (!study) return null;
  const csrf = info.csrf || '';
  const logout = el('form', { method: 'post', action: '/auth/logout' }, [
    el('input', { type: 'hidden', name: 'csrf', value: csrf }),
    el('button', { type: 'submit', class: 'drimbox-logout', text: 'Se déconnecter' }),
  ]);
  const ok = el('button', { type: 'button', class: 'drimbox-ok', text: 'Voir les images' });
  const connected = info.user ? 'Connecté : ' + info.user : '';
  const list = identityList(studies);
  const actions = el('div', { class: 'drimbox-actions' }, [logout, ok]);
  const card = el('div', { class: 'drimbox-card' }, [
    el('h2', { id: 'drimbox-identity-title', text: 'Identité du patient' }),
    el('p', { text: "Selon le document de référence de l'examen (KOS). " + connected }),
    list,
    actions,
  ]);
  const dialog = el(
    'div',
    { id: 'drimbox-identity', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'drimbox-identity-title' },
    [card]
  );
  const badge = el('button', {
    id: 'drimbox-badge',
    type: 'button',
    title: 'Identité du patient',
    text: patientBadge(study),
  });
  /** @type {() => void} */
  let markDismissed = () => {};
  /** @type {Promise<void>} */
  const dismissed = new Promise((resolve) => {
    markDismissed = resolve;
  });
  const hide = () => {
    dialog.hidden = true;
    markDismissed();
  };
  ok.addEventListener('click', () => {
    hide();
    badge.focus();
  });
  badge.addEventListener('click', () => {
    dialog.hidden = false;
    ok.focus();
  });
  document.body.appendChild(dialog);
  document.body.appendChild(badge);
  ok.focus();
  return { dialog, card, list, actions, csrf, hide, dismissed };
}
