// @ts-check
// What the viewer says when something fails around the images (issue 14), in French,
// with the stable code, inside the viewer itself (OHIF's own notifications are English
// or generic):
// - the failure notice (DB.VI-SO.28): what happened, one line per code met, and that the
//   site that produced the exam is the one to contact, named from the KOS; when OHIF
//   gives up on the exam (its /notfoundstudy page, in English and hard-coded in 3.13.2),
//   the same, over that page, with a "Réessayer" button;
// - the session's end: a cover over the whole viewer (the images are hidden: a shared
//   computer), how to open the exam again, and the logout at the identity provider.
import { el, statusBox } from './dom.js';
import { contactSiteText, failureLine, logoutHint, sessionEndTexts } from './format.js';

/** @typedef {import('./http-errors.js').HttpFailure} HttpFailure */

const fillNotice = statusBox('drimbox-notice', 'alert');
/** Lines shown, by text: each failure once, in the order met. */
const shownLines = new Set();
/** @type {Set<string>} */
const sites = new Set();
let contact = false;
/** @type {HTMLElement | null} OHIF gave up on the exam: the page over its own. */
let unavailable = null;

/** @returns {HTMLElement[]} the failures met, and whom to contact */
function failureChildren() {
  const children = [...shownLines].map((text) => el('p', { class: 'drimbox-error', text }));
  if (contact) {
    children.push(el('p', { class: 'drimbox-contact', text: contactSiteText([...sites].join(', ')) }));
  }
  return children;
}

/**
 * Shows (or adds to) the failure notice. The box is a live region read out at once
 * (role=alert); closed, it shows again only for a failure not yet shown.
 * @param {HttpFailure} failure
 * @param {string} site the producing site's name ('' when unknown)
 */
export function showFailure(failure, site) {
  const line = failureLine(failure);
  const fresh = !shownLines.has(line) || (failure.contactSite && !contact);
  shownLines.add(line);
  contact = contact || failure.contactSite;
  if (failure.contactSite && site) sites.add(site);
  if (!fresh) return;
  if (unavailable) fillUnavailable(unavailable);
  else fillNotice('Les images ne peuvent pas être affichées', failureChildren()).hidden = false;
}

/** @param {HTMLElement} cover */
function fillUnavailable(cover) {
  const card = cover.firstElementChild;
  const details = card && card.querySelector('.drimbox-failures');
  if (details) details.replaceChildren(...failureChildren());
}

/**
 * OHIF gave up on the exam (its English /notfoundstudy page): a French page over it,
 * saying what failed (the failures met so far, and those still to come), whom to
 * contact, and a button to try again.
 * @param {object} options
 * @param {ReadonlyArray<string>} options.siteNames the producing sites of the exams shown
 * @param {string} options.retryUrl the viewer's URL as it opened
 */
export function showUnavailable({ siteNames, retryUrl }) {
  if (unavailable) return;
  contact = true; // only the producing site can mend an exam its PACS does not give
  siteNames.forEach((name) => name && sites.add(name));
  if (!shownLines.size) shownLines.add("Le serveur d'images du site n'a pas fourni cet examen.");
  const retry = el('button', { type: 'button', class: 'drimbox-ok', text: 'Réessayer' });
  retry.addEventListener('click', () => window.location.assign(retryUrl));
  const card = el('div', { class: 'drimbox-card' }, [
    el('h2', { id: 'drimbox-unavailable-title', text: "L'examen ne peut pas être affiché pour le moment" }),
    el('div', { class: 'drimbox-failures' }),
    el('div', { class: 'drimbox-actions' }, [retry]),
  ]);
  unavailable = el('div', { id: 'drimbox-unavailable', role: 'alert', 'aria-labelledby': 'drimbox-unavailable-title' }, [card]);
  fillUnavailable(unavailable);
  const notice = document.getElementById('drimbox-notice');
  if (notice) notice.hidden = true; // said on the page now
  document.body.appendChild(unavailable);
}

/**
 * What the page knew of its session when it opened (GET /api/session): who (profile),
 * how to open the exam again (reopen), and its CSRF token, with which the logout still
 * ends an expired session at the identity provider (bff/source/routes.py logout).
 * @typedef {{profile?: string, reopen?: string, csrf: string}} SessionFacts
 */

/**
 * The cover shown once the session has ended, over everything (issue 14).
 * @param {SessionFacts} session
 * @returns {HTMLElement}
 */
export function showSessionEnd({ profile, reopen, csrf }) {
  const texts = sessionEndTexts(profile, reopen);
  const actions = el('div', { class: 'drimbox-actions' }, [
    texts.link && el('a', { class: 'drimbox-ok', href: texts.link.href, text: texts.link.text }),
  ]);
  const logout = el('form', { method: 'post', action: '/auth/logout', class: 'drimbox-logout-form' }, [
    el('input', { type: 'hidden', name: 'csrf', value: csrf }),
    el('span', { text: logoutHint(profile) }),
    el('button', { type: 'submit', class: 'drimbox-logout', text: 'Se déconnecter' }),
  ]);
  const card = el('div', { class: 'drimbox-card' }, [
    el('h2', { id: 'drimbox-session-end-title', text: texts.title }),
    ...texts.lines.map((text) => el('p', { text })),
    el('p', { class: 'drimbox-code', text: "Code d'erreur : E401" }),
    actions,
    logout,
  ]);
  const cover = el(
    'div',
    {
      id: 'drimbox-session-end',
      role: 'alertdialog',
      'aria-modal': 'true',
      'aria-labelledby': 'drimbox-session-end-title',
    },
    [card]
  );
  document.body.appendChild(cover);
  const first = cover.querySelector('a, button');
  if (first instanceof HTMLElement) first.focus();
  return cover;
}
