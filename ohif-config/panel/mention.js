// @ts-check
// Non-diagnostic mention (DB.VI-CS.26): always visible while images are shown, unless
// the deployment is a medical device AND every image shown is lossless. The Source
// serves lossy frames: there it is always on.
import { el } from './dom.js';

/** @typedef {import('./api.js').SeriesProgress} SeriesProgress */

const MENTION_TEXT = 'Images compressées avec perte : affichage non destiné au diagnostic.';

/** @type {HTMLElement | null} */
let mention = null;

/**
 * Whether the mention shows: not a medical device, or some image lossy, or nothing known
 * yet about the images.
 * @param {boolean} medicalDevice
 * @param {ReadonlyArray<SeriesProgress>} series
 * @returns {boolean}
 */
export function mentionShown(medicalDevice, series) {
  return !medicalDevice || !series.length || series.some((s) => s.lossy);
}

/**
 * Shows or hides the mention for what is known of the images now.
 * @param {boolean} medicalDevice
 * @param {ReadonlyArray<SeriesProgress>} series
 */
export function updateMention(medicalDevice, series) {
  const show = mentionShown(medicalDevice, series);
  if (show && !mention) {
    mention = el('div', { id: 'drimbox-mention', role: 'note', text: MENTION_TEXT });
    document.body.appendChild(mention);
  }
  if (mention) mention.hidden = !show;
}
