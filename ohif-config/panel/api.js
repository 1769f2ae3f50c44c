// @ts-check
// What the page around OHIF asks the BFF (same origin, HttpOnly session cookie: no token
// is ever exposed to this code), and the exams named in the page's URL.

/**
 * One exam of the session, with the identity its KOS gives (GET /api/session).
 * @typedef {object} Study
 * @property {string} study_uid
 * @property {string} [birth_name]
 * @property {string[]} [given_names]
 * @property {string} [sex]
 * @property {string} [birth_date] DICOM DA, YYYYMMDD
 * @property {string} [birthplace] INSEE code
 * @property {string} [ins]
 * @property {string} [ins_oid]
 * @property {string} [institution]
 * @property {string} [accession_number]
 * @property {string} [local_patient_id] the practice's own id (Consumer, DB.VI-CS.32)
 * @property {string} [local_patient_issuer]
 * @property {string} [source_patient_id] the Source's id, shown beside the local one
 */

/**
 * GET /api/session: what the page shows around OHIF.
 * @typedef {object} SessionInfo
 * @property {boolean} [medical_device] DB.VI-CS.26
 * @property {string} [profile]
 * @property {string} [user]
 * @property {string} [csrf]
 * @property {Study[]} [studies]
 * @property {string} [reopen] how the exam is opened again once the session ends:
 *   'report' (the report link) or 'consumer' (the Consumer DRIMbox's page)
 */

/**
 * One series of GET /api/progress (DB.VI-CS.18, DB.VI-CO.27).
 * @typedef {object} SeriesProgress
 * @property {string} [study_uid]
 * @property {string} series_uid
 * @property {string} [description]
 * @property {number} received
 * @property {number | null} [total]
 * @property {boolean} complete
 * @property {boolean} [on_demand] not pulled until the user displays it (DB.VI-CS.05)
 * @property {boolean} [lossy]
 * @property {{code: string, message: string, contact_site?: boolean} | null} [error]
 */

/**
 * An answer of GET /api/progress: `ok` false for an HTTP error or no answer at all
 * (`status` 0).
 * @typedef {{ok: boolean, status: number, series: SeriesProgress[]}} ProgressAnswer
 */

/** A DICOM JSON dataset (QIDO-RS row). */
/** @typedef {Record<string, {vr?: string, Value?: unknown[]} | undefined>} DicomJson */

const JSON_HEADERS = Object.freeze({ Accept: 'application/json' });
const DICOM_JSON_HEADERS = Object.freeze({ Accept: 'application/dicom+json' });

/**
 * The exams this page shows: the StudyInstanceUIDs of its URL, in order.
 * @param {string} [search] a URL's query string (default: the page's)
 * @returns {string[]}
 */
export function studiesInUrl(search = window.location.search) {
  const value = new URLSearchParams(search).get('StudyInstanceUIDs') || '';
  return value.split(',').filter((uid) => uid);
}

/** @returns {Promise<SessionInfo | null>} null without a session */
export async function getSession() {
  const r = await fetch('/api/session', { credentials: 'same-origin', headers: JSON_HEADERS });
  return r.ok ? /** @type {Promise<SessionInfo>} */ (r.json()) : null;
}

/**
 * Whether the session still lives (GET /api/session/state, which the BFF does not count
 * as activity): its HTTP status, 200 or 401; 0 without an answer. Never rejects.
 * @returns {Promise<number>}
 */
export async function getSessionState() {
  try {
    const r = await fetch('/api/session/state', { credentials: 'same-origin', headers: JSON_HEADERS });
    return r.status;
  } catch {
    return 0;
  }
}

/**
 * GET /api/progress names the first study of the viewer's URL: behind the balancer the
 * request then goes to the replica that retrieves that study (docs/deployment.md); the BFF
 * itself answers for every study of the session whatever the parameter.
 * @param {string} search the page's location.search
 * @returns {string}
 */
export function progressUrl(search) {
  const uids = new URLSearchParams(search).get('StudyInstanceUIDs') || '';
  const first = uids.split(',')[0].trim();
  return first ? `/api/progress?studyUID=${encodeURIComponent(first)}` : '/api/progress';
}

/** @returns {Promise<ProgressAnswer>} never rejects */
export async function getProgress() {
  try {
    const r = await fetch(progressUrl(window.location.search), { credentials: 'same-origin', headers: JSON_HEADERS });
    if (!r.ok) return { ok: false, status: r.status, series: [] };
    const data = /** @type {{series?: SeriesProgress[]}} */ (await r.json());
    return { ok: true, status: r.status, series: (data && data.series) || [] };
  } catch {
    return { ok: false, status: 0, series: [] };
  }
}

/** @type {Map<string, Promise<DicomJson[]>>} */
const seriesSearches = new Map();

/**
 * The series of an exam (the facade's QIDO-RS series search), asked once per page for
 * every part that needs them; [] when the BFF refuses.
 * @param {string} studyUid
 * @returns {Promise<DicomJson[]>}
 */
export function seriesOf(studyUid) {
  let search = seriesSearches.get(studyUid);
  if (!search) {
    search = fetch('/dicomweb/studies/' + encodeURIComponent(studyUid) + '/series', {
      credentials: 'same-origin',
      headers: DICOM_JSON_HEADERS,
    }).then((r) => (r.ok ? /** @type {Promise<DicomJson[] | null>} */ (r.json()) : []))
      .then((rows) => rows || []);
    search.catch(() => seriesSearches.delete(studyUid)); // asked again next time
    seriesSearches.set(studyUid, search);
  }
  return search;
}

/**
 * The study download's URL (DB.VI-SO.176).
 * @param {string} studyUid
 * @returns {string}
 */
export function downloadUrl(studyUid) {
  return '/api/download/' + encodeURIComponent(studyUid);
}

/**
 * Whether the BFF offers this exam's download here (a HEAD request: nothing retrieved).
 * @param {string} studyUid
 * @returns {Promise<boolean>}
 */
export async function canDownload(studyUid) {
  const r = await fetch(downloadUrl(studyUid), { method: 'HEAD', credentials: 'same-origin' });
  return r.ok;
}

/**
 * Asks the BFF to retrieve this series first (DB.VI-SO.189).
 * @param {string} studyUid
 * @param {string} seriesUid
 * @param {string} csrf the session's CSRF token
 * @returns {Promise<Response>}
 */
export function preferSeries(studyUid, seriesUid, csrf) {
  const url = '/api/priority/' + encodeURIComponent(studyUid) + '/' + encodeURIComponent(seriesUid);
  return fetch(url, {
    method: 'POST',
    credentials: 'same-origin',
    keepalive: true,
    headers: { 'X-CSRF-Token': csrf },
  });
}

/**
 * A PACS export and how it stands (GET/POST /api/pacs-export/<study>, DB.VI-CO.42).
 * @typedef {object} PacsExportJob
 * @property {string} id
 * @property {string} study_uid
 * @property {string | null} series_uid null: the whole exam
 * @property {string} destination its name, as the user chose it
 * @property {'running' | 'done' | 'failed'} state
 * @property {number | null} total
 * @property {number} sent
 * @property {number} refused
 * @property {string | null} code when failed
 * @property {string} message the French sentence to show
 */

/**
 * What the BFF offers for exporting an exam (GET /api/pacs-export/<study>).
 * @typedef {object} PacsExportOffer
 * @property {{id: string, name: string}[]} destinations
 * @property {PacsExportJob | null} job the user's last export of this exam
 */

/**
 * @param {string} studyUid
 * @returns {string}
 */
function pacsExportUrl(studyUid) {
  return '/api/pacs-export/' + encodeURIComponent(studyUid);
}

/**
 * The export offer for this exam, or null when none (no destination configured, not a
 * Consumer exam, no session). Never rejects.
 * @param {string} studyUid
 * @returns {Promise<PacsExportOffer | null>}
 */
export async function getPacsExport(studyUid) {
  try {
    const r = await fetch(pacsExportUrl(studyUid), { credentials: 'same-origin', headers: JSON_HEADERS });
    return r.ok ? /** @type {Promise<PacsExportOffer>} */ (r.json()) : null;
  } catch {
    return null;
  }
}

/**
 * Starts exporting the exam (or one series) to a destination. Never rejects: the job, or
 * the BFF's refusal ({code, message}; status 0 without an answer).
 * @param {string} studyUid
 * @param {string} destination a destination id
 * @param {string} seriesUid '' for the whole exam
 * @param {string} csrf the session's CSRF token
 * @returns {Promise<{ok: boolean, status: number, job?: PacsExportJob, code?: string, message?: string}>}
 */
export async function startPacsExport(studyUid, destination, seriesUid, csrf) {
  /** @type {Record<string, string>} */
  const body = { destination };
  if (seriesUid) body.series_uid = seriesUid;
  try {
    const r = await fetch(pacsExportUrl(studyUid), {
      method: 'POST',
      credentials: 'same-origin',
      headers: { ...JSON_HEADERS, 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify(body),
    });
    const data = await r.json().catch(() => ({}));
    if (r.ok) return { ok: true, status: r.status, job: data };
    return { ok: false, status: r.status, code: data.code, message: data.message };
  } catch {
    return { ok: false, status: 0 };
  }
}
