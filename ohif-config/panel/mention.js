// @ts-check
// Non-diagnostic mention (DB.VI-CS.26): always visible while images are shown, unless
// the deployment is a medical device AND every image shown is lossless. The Source
// serves lossy frames: there it is always on.
import { el } from './dom.js';

/** @typedef {import('./api.js').SeriesProgress} SeriesProgress */

/** What the mention says, by why it shows: it names the reason, never a wrong one. */
export const MENTION_TEXTS = Object.freeze({
  lossy: 'Images compressées avec perte : affichage non destiné au diagnostic.',
  device: 'Visionneuse non référencée comme dispositif médical : affichage non destiné au diagnostic.',
  unknown: 'Affichage non destiné au diagnostic.',
});

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
 * What the mention says: lossy images first (what the user sees), else the deployment not
 * being a medical device, else nothing known yet about the images.
 * @param {boolean} medicalDevice
 * @param {ReadonlyArray<SeriesProgress>} series
 * @returns {string}
 */
export function mentionText(medicalDevice, series) {
  if (series.some((s) => s.lossy)) return MENTION_TEXTS.lossy;
  if (!medicalDevice) return MENTION_TEXTS.device;
  return MENTION_TEXTS.unknown;
}

/**
 * Shows or hides the mention for what is known of the images now.
 * @param {boolean} medicalDevice
 * @param {ReadonlyArray<SeriesProgress>} series
 */
export function updateMention(medicalDevice, series) {
  const show = mentionShown(medicalDevice, series);
  if (show && !mention) {
    mention = el('div', { id: 'drimbox-mention', role: 'note' });
    document.body.appendChild(mention);
  }
  if (!mention) return;
  mention.hidden = !show;
  const text = mentionText(medicalDevice, series);
  if (show && mention.textContent !== text) mention.textContent = text;
}
