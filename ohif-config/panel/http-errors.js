// @ts-check
// OHIF's HTTP errors, as app-config.js's httpErrorHandler hands them to the page around
// OHIF (DB.VI-SO.28, issue 14): what each says (status, our stable code, our French
// message, whether only the producing site can mend it, which exam), read from whatever
// OHIF 3.13.2 passes its handler:
// - its DICOMweb client (searches, metadata): an Error with `status`, `request` (the
//   XMLHttpRequest) and `response` (the parsed JSON body, or an ArrayBuffer);
// - cornerstone's image loader (frames), through its IMAGE_LOAD_FAILED event: the
//   XMLHttpRequest itself, or an Error whose message names the status (streaming).
// The BFF answers every failure with `X-Error-Code` and a JSON body {code, message,
// contact_site?} (bff/web/errors.py). `httpFailure` is pure (tests/http-errors.test.js).

/**
 * @typedef {object} HttpFailure
 * @property {number} status
 * @property {string} code our stable code ('E503'), '' when the answer did not say
 * @property {string} message our French message, '' when the answer did not say
 * @property {boolean} contactSite only the site that produced the exam can mend it
 * @property {string} studyUid the exam asked about, '' when unknown
 * @property {string} seriesUid the series asked about, '' when unknown
 */

/**
 * Where app-config.js's handler puts each error: a queue (an array) until this part
 * starts, then the function that handles them.
 */
export const HTTP_ERROR_SINK = 'DRIMBOX_HTTP_ERRORS';

/** @typedef {{getResponseHeader(name: string): string | null, status?: number, response?: unknown, responseURL?: string}} RequestLike */

/**
 * @param {unknown} value
 * @returns {value is RequestLike}
 */
function isRequest(value) {
  return !!value && typeof (/** @type {RequestLike} */ (value).getResponseHeader) === 'function';
}

/**
 * The JSON body of our error answers, however the client read it.
 * @param {unknown} response
 * @returns {{code?: unknown, message?: unknown, contact_site?: unknown}}
 */
export function errorBody(response) {
  let value = response;
  try {
    if (value instanceof ArrayBuffer) value = new TextDecoder().decode(value);
    if (typeof value === 'string') value = JSON.parse(value);
  } catch {
    return {};
  }
  return value && typeof value === 'object' && !Array.isArray(value) ? value : {};
}

/**
 * The exam and series a DICOMweb URL is about ('' for what it does not name).
 * @param {string} url
 * @returns {{studyUid: string, seriesUid: string}}
 */
export function uidsOfUrl(url) {
  const match = /\/dicomweb\/studies\/([0-9.]+)(?:\/series\/([0-9.]+))?(?:[/?\s]|$)/.exec(url || '');
  return { studyUid: (match && match[1]) || '', seriesUid: (match && match[2]) || '' };
}

/**
 * What one error handed to httpErrorHandler says; null for what is not an HTTP failure
 * (a request cancelled by OHIF itself, or that never reached the BFF: status 0).
 * @param {unknown} error
 * @returns {HttpFailure | null}
 */
export function httpFailure(error) {
  if (!error || typeof error !== 'object') return null;
  const fields = /** @type {{status?: unknown, request?: unknown, response?: unknown, message?: unknown}} */ (error);
  const request = isRequest(fields.request) ? fields.request : isRequest(error) ? error : null;
  const said = typeof fields.message === 'string' ? fields.message : '';
  let status = Number(fields.status) || (request && Number(request.status)) || 0;
  if (!status) {
    // cornerstone's streaming loader: "Couldn't retrieve <url> got status 502".
    const named = /status (\d{3})\b/.exec(said);
    status = named ? Number(named[1]) : 0;
  }
  if (status < 400) return null;
  const body = errorBody(fields.response !== undefined ? fields.response : request && request.response);
  const header = request ? request.getResponseHeader('X-Error-Code') : null;
  const code = header || (typeof body.code === 'string' ? body.code : '');
  const message = typeof body.message === 'string' ? body.message : '';
  // Without our body (a streamed frame), a gateway failure is the PACS's.
  const contactSite = body.contact_site === true || (!message && status >= 502 && status <= 504);
  const { studyUid, seriesUid } = uidsOfUrl((request && request.responseURL) || said);
  return { status, code, message, contactSite, studyUid, seriesUid };
}

/**
 * A failure whose answer did not say its code (a streamed frame), told by the error the
 * BFF reports for its series (GET /api/progress): the same code and message.
 * @param {HttpFailure} failure
 * @param {ReadonlyArray<import('./api.js').SeriesProgress>} series
 * @returns {HttpFailure}
 */
export function withSeriesError(failure, series) {
  if (failure.code || !failure.seriesUid) return failure;
  const known = series.find((s) => s.series_uid === failure.seriesUid && s.error);
  if (!known || !known.error) return failure;
  const { code, message } = known.error;
  return { ...failure, code, message, contactSite: !!known.error.contact_site };
}

/**
 * Calls `onFailure` with each HTTP failure OHIF meets from now on, and those it met
 * before this page part started (queued by app-config.js).
 * @param {(failure: HttpFailure) => void} onFailure
 */
export function listenHttpErrors(onFailure) {
  const handle = (/** @type {unknown} */ error) => {
    const failure = httpFailure(error);
    if (failure) onFailure(failure);
  };
  const globals = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (window));
  const queued = globals[HTTP_ERROR_SINK];
  globals[HTTP_ERROR_SINK] = handle;
  if (Array.isArray(queued)) queued.forEach(handle);
}
