// @ts-check
// Viewer tools (issue 6, display conformance: tools): three controls around OHIF, in
// French, each one or two clicks away, none touching OHIF's code (only cornerstone's
// public API, window.cornerstone, and same-origin URLs):
// - MIP / MinIP with a slab thickness in mm (DB.VI-CS.23): stock OHIF 3.13.2 has no
//   control for the blend mode (only the crosshairs' slab handles, MIP only); shown while
//   volume (MPR) viewports are on screen, it sets cornerstone's blend mode and slab
//   thickness on each of them;
// - "Fusion TEP-TDM" (DB.VI-CS.24, .117): a link to OHIF's /tmtv mode when the study holds
//   PT and CT series (OHIF offers its modes only from the study list, which is off here),
//   and "Retour à la visionneuse" from there;
// - "Comparer les deux examens" (DB.VI-CS.35, .36): when the session is granted two
//   exams, both side by side in one tab (OHIF's hanging protocol @ohif/hpCompare).
import { getSession, seriesOf, studiesInUrl } from './api.js';
import { el } from './dom.js';
import { tagValue } from './format.js';

/** @typedef {import('../types/ohif.js').Viewport} Viewport */
/** @typedef {import('../types/ohif.js').VolumeViewport} VolumeViewport */

/** Cornerstone's blend mode (Enums.BlendModes) of each choice of the control. */
const BLEND_MODES = Object.freeze(
  /** @type {Record<string, string>} */ ({
    normal: 'COMPOSITE',
    mip: 'MAXIMUM_INTENSITY_BLEND',
    minip: 'MINIMUM_INTENSITY_BLEND',
  })
);
export const DEFAULT_THICKNESS_MM = 10;
const LINK_IDS = ['drimbox-fusion', 'drimbox-fusion-back', 'drimbox-compare'];

/** @type {HTMLElement | null} */
let box = null;
/** @type {HTMLFormElement | null} */
let projection = null;
let seenHref = '';

/** @returns {HTMLElement} */
function toolsBox() {
  if (!box) {
    box = el('div', { id: 'drimbox-tools' });
    document.body.appendChild(box);
  }
  return box;
}

/**
 * The slab thickness the user typed, in mm ('12,5' is 12.5); the default if it is not a
 * positive number.
 * @param {string} text
 * @returns {number}
 */
export function slabThicknessMm(text) {
  const mm = parseFloat(String(text).replace(',', '.'));
  return Number.isFinite(mm) && mm > 0 ? mm : DEFAULT_THICKNESS_MM;
}

// --- MIP / MinIP (DB.VI-CS.23) ---

/** @returns {VolumeViewport[]} */
function volumeViewports() {
  const cs = window.cornerstone;
  if (!cs || typeof cs.getEnabledElements !== 'function') return [];
  return cs
    .getEnabledElements()
    .map((element) => element.viewport)
    .filter(
      /** @returns {vp is VolumeViewport} */
      (/** @type {Viewport | undefined} */ vp) =>
        !!vp &&
        vp.type === 'orthographic' &&
        typeof vp.setBlendMode === 'function' &&
        typeof vp.setSlabThickness === 'function'
    );
}

/**
 * @param {string} kind 'normal' | 'mip' | 'minip'
 * @param {number} thicknessMm
 */
function applyProjection(kind, thicknessMm) {
  const cs = window.cornerstone;
  if (!cs) return;
  const defaults = (cs.CONSTANTS && cs.CONSTANTS.RENDERING_DEFAULTS) || {};
  const thinnest = defaults.MINIMUM_SLAB_THICKNESS || 0.05;
  const mode = cs.Enums.BlendModes[BLEND_MODES[kind] || BLEND_MODES.normal];
  const thickness = kind === 'normal' ? thinnest : Math.max(thicknessMm, thinnest);
  for (const vp of volumeViewports()) {
    vp.setBlendMode(mode);
    vp.setSlabThickness(thickness);
    vp.render();
  }
}

/** @returns {HTMLFormElement} */
function projectionForm() {
  const kind = el('select', { name: 'kind', 'aria-label': 'Type de projection' }, [
    el('option', { value: 'normal', text: 'Coupe fine' }),
    el('option', { value: 'mip', text: 'MIP (intensité maximale)' }),
    el('option', { value: 'minip', text: 'MinIP (intensité minimale)' }),
  ]);
  const thickness = el('input', {
    name: 'thickness',
    type: 'number',
    min: '1',
    max: '1000',
    step: '1',
    value: String(DEFAULT_THICKNESS_MM),
    'aria-label': 'Épaisseur de la tranche en mm',
  });
  const form = el(
    'form',
    {
      id: 'drimbox-projection',
      'aria-label': 'Projection MIP / MinIP',
      title: "Projection sur une tranche d'épaisseur choisie (vues MPR)",
    },
    [el('span', { text: 'Projection' }), kind, thickness, el('span', { text: 'mm' })]
  );
  /** @param {Event} [event] */
  const apply = (event) => {
    if (event) event.preventDefault();
    applyProjection(kind.value, slabThicknessMm(thickness.value));
  };
  form.addEventListener('submit', apply);
  kind.addEventListener('change', apply);
  thickness.addEventListener('change', apply);
  return form;
}

function updateProjection() {
  const show = window.location.pathname === '/viewer' && volumeViewports().length > 0;
  if (show && !projection) {
    projection = projectionForm();
    toolsBox().appendChild(projection);
  }
  if (projection) projection.hidden = !show;
}

// --- PET-CT fusion (DB.VI-CS.24, .117) and two exams (DB.VI-CS.35, .36) ---

/**
 * @param {string} id
 * @param {string} text
 * @param {string} href
 * @param {string} title
 */
function addLink(id, text, href, title) {
  toolsBox().appendChild(el('a', { id, href, title, text }));
}

/** @param {ReadonlyArray<string>} studies the exams in the URL */
function addFusionLinks(studies) {
  if (window.location.pathname === '/tmtv' && studies.length === 1) {
    addLink(
      'drimbox-fusion-back',
      'Retour à la visionneuse',
      '/viewer?StudyInstanceUIDs=' + encodeURIComponent(studies[0]),
      "Affichage habituel de l'examen"
    );
    return;
  }
  if (window.location.pathname !== '/viewer' || studies.length !== 1) return;
  const uid = studies[0];
  seriesOf(uid)
    .then((series) => {
      const modalities = series.map((row) => tagValue(row, '00080060'));
      if (!modalities.includes('PT') || !modalities.includes('CT')) return;
      addLink(
        'drimbox-fusion',
        'Fusion TEP-TDM',
        '/tmtv?StudyInstanceUIDs=' + encodeURIComponent(uid),
        'TEP et scanner superposés, valeurs SUV'
      );
    })
    .catch(() => {
      /* no fusion link: the viewer still works */
    });
}

/** @param {ReadonlyArray<string>} studies the exams in the URL */
function addCompareLink(studies) {
  if (window.location.pathname !== '/viewer' || studies.length !== 1) return;
  getSession()
    .then((info) => {
      const granted = ((info && info.studies) || []).map((s) => s.study_uid);
      const others = granted.filter((uid) => uid !== studies[0]);
      if (!granted.includes(studies[0]) || !others.length) return;
      // The exam on screen first, then the last other exam opened.
      const pair = [studies[0], others[others.length - 1]];
      addLink(
        'drimbox-compare',
        'Comparer les deux examens',
        '/viewer?StudyInstanceUIDs=' + pair.map(encodeURIComponent).join(',') +
          '&hangingProtocolId=' + encodeURIComponent('@ohif/hpCompare'),
        'Les deux examens côte à côte dans cet onglet'
      );
    })
    .catch(() => {
      /* no compare link: the viewer still works */
    });
}

/**
 * Brings the tools in line with the page: OHIF changes the URL without reloading (the
 * links follow the exam shown) and opens volume viewports when the user asks for MPR.
 * Called by the page watch of main.js.
 */
export function updateTools() {
  if (window.location.href !== seenHref) {
    seenHref = window.location.href;
    for (const id of LINK_IDS) {
      const old = document.getElementById(id);
      if (old) old.remove();
    }
    const studies = studiesInUrl();
    addFusionLinks(studies);
    addCompareLink(studies);
  }
  updateProjection();
}
