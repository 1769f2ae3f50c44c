// @ts-check
// The one DOM helper of the page around OHIF. Text goes in through textContent only:
// nothing is ever parsed as HTML. No inline style either (a Content-Security-Policy
// without 'unsafe-inline' refuses style attributes): looks come from panel.css, and the
// few computed values (a progress bar's width) go through the CSSOM.

/**
 * Attributes of an element; `text` is its textContent, an undefined value is left out.
 * @typedef {Readonly<Record<string, string | undefined>>} Attributes
 */

/** A child of {@link el}: null, undefined and false are skipped. */
/** @typedef {Node | null | undefined | false} Child */

/**
 * A new element with its attributes, text and children.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attributes} [attrs]
 * @param {ReadonlyArray<Child>} [children]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined) continue;
    if (name === 'text') node.textContent = value;
    else if (name === 'style') throw new TypeError('el(): no inline style, use panel.css');
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child) node.appendChild(child);
  }
  return node;
}

/**
 * A box of the page that says how things stand (role status, read out politely; role
 * alert for a failure, read out at once), with a "Fermer" button that hides it. Made on
 * first use; each call fills it anew (the user's closing is kept: the caller decides
 * when it shows again).
 * @param {string} id
 * @param {'status' | 'alert'} [role]
 * @returns {(title: string, children: ReadonlyArray<Node>) => HTMLElement}
 */
export function statusBox(id, role = 'status') {
  /** @type {HTMLElement | null} */
  let box = null;
  const live = role === 'alert' ? 'assertive' : 'polite';
  return (title, children) => {
    if (!box) {
      box = el('section', { id, class: 'drimbox-box', role, 'aria-live': live });
      document.body.appendChild(box);
    }
    const shown = box;
    const close = el('button', { type: 'button', title: 'Fermer', text: '×' });
    close.addEventListener('click', () => {
      shown.hidden = true;
    });
    box.replaceChildren(close, el('h3', { text: title }), ...children);
    return box;
  };
}

/**
 * Runs `start` once the document's body exists (module scripts added by app-config.js
 * may run before the parser reaches it).
 * @param {() => void} start
 */
export function whenReady(start) {
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
}

/**
 * Adds a stylesheet to the page; resolves once it has loaded, or failed (the panel then
 * shows unstyled rather than not at all).
 * @param {string} href
 * @returns {Promise<void>}
 */
export function loadStylesheet(href) {
  return new Promise((resolve) => {
    const link = el('link', { rel: 'stylesheet', href });
    link.addEventListener('load', () => resolve());
    link.addEventListener('error', () => resolve());
    document.head.appendChild(link);
  });
}
