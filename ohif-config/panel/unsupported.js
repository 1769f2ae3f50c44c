// @ts-check
// Objects the viewer cannot show (DB.VI-CS.30, issue 6). Stock OHIF 3.13.2 makes an
// 'unsupported' display set (ds.unsupported, no viewport, an English tooltip) for a SOP
// class none of its handlers takes (raw data, registrations, presentation states...).
// They are listed here in French rather than left silently blank, and so are images in
// a transfer syntax the BFF does not serve (their frames would fail). OHIF's own verdict
// is read from window.services.displaySetService (set by the cornerstone extension at
// start-up); works with or without a session.
import { isServedTransferSyntax, unsupportedSopClassName } from './codes.js';
import { el, statusBox } from './dom.js';

/** @typedef {import('../types/ohif.js').DisplaySet} DisplaySet */
/** @typedef {import('../types/ohif.js').DisplaySetService} DisplaySetService */

/**
 * One line of the notice.
 * @typedef {{uid: string, series: string, text: string}} UnsupportedLine
 */

/**
 * The display sets the viewer cannot show, each with its French explanation.
 * @param {ReadonlyArray<DisplaySet> | undefined} displaySets
 * @returns {UnsupportedLine[]}
 */
export function unsupportedLines(displaySets) {
  /** @type {UnsupportedLine[]} */
  const lines = [];
  for (const ds of displaySets || []) {
    const instance = ds.instance || (ds.instances || [])[0] || {};
    const series = ds.SeriesDescription || 'Série ' + (ds.SeriesNumber || '');
    const uid = ds.displaySetInstanceUID;
    if (ds.unsupported) {
      const name = unsupportedSopClassName(String(ds.SOPClassUID || instance.SOPClassUID || ''), ds.Modality);
      lines.push({ uid, series, text: 'Cet objet (' + name + ') ne peut pas être affiché dans la visionneuse.' });
      continue;
    }
    const syntax = instance.TransferSyntaxUID;
    if (syntax && instance.Rows && !isServedTransferSyntax(syntax)) {
      lines.push({
        uid,
        series,
        text: 'Cette image (syntaxe de transfert ' + syntax + ') ne peut pas être affichée dans la visionneuse.',
      });
    }
  }
  return lines;
}

const fillBox = statusBox('drimbox-unsupported');
/** @type {HTMLElement | null} */
let box = null;

/** @param {ReadonlyArray<UnsupportedLine>} lines */
function render(lines) {
  if (!lines.length) {
    if (box) box.hidden = true;
    return;
  }
  const items = lines.map((line) =>
    el('p', { class: 'drimbox-unsupported-item', 'data-display-set': line.uid, text: line.series + ' : ' + line.text })
  );
  box = fillBox('Objets non affichables', items);
  box.hidden = false;
}

/**
 * Follows OHIF's display sets once its services exist.
 * @param {DisplaySetService | undefined} displaySets window.services.displaySetService
 * @returns {boolean} false while OHIF's services are not there yet (ask again later)
 */
export function watchUnsupported(displaySets) {
  if (!displaySets || !displaySets.subscribe) return false;
  const service = displaySets;
  let seen = '';
  const update = () => {
    const lines = unsupportedLines(service.getActiveDisplaySets());
    const key = lines.map((l) => l.uid).join(',');
    if (key !== seen) {
      seen = key;
      render(lines);
    }
  };
  const events = service.EVENTS || {};
  for (const name of [events.DISPLAY_SETS_ADDED, events.DISPLAY_SETS_CHANGED, events.DISPLAY_SETS_REMOVED]) {
    if (name) service.subscribe(name, update);
  }
  update();
  return true;
}
