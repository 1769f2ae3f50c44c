// @ts-check
// What the page around OHIF reads in the errors OHIF 3.13.2 hands app-config.js's
// httpErrorHandler (panel/http-errors.js; DB.VI-SO.28, issue 14), in the shapes seen in
// Chromium: its DICOMweb client's Error, cornerstone's XMLHttpRequest, its streaming
// loader's Error that only names the status.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { errorBody, httpFailure, uidsOfUrl, withSeriesError } from '../panel/http-errors.js';

const STUDY = '1.2.250.1.213.4.5.2.1.101';
const SERIES = '1.2.250.1.213.4.5.2.1.101.2';
const FRAME_URL = `https://vi1.example.fr/dicomweb/studies/${STUDY}/series/${SERIES}/instances/1.2.3/frames/1`;
const BODY = { code: 'E503', message: "Le serveur d'images est injoignable.", contact_site: true };

/**
 * An XMLHttpRequest as the BFF answered it.
 * @param {number} status
 * @param {Record<string, string>} headers
 * @param {unknown} response
 */
function xhr(status, headers, response) {
  return {
    status,
    response,
    responseURL: FRAME_URL,
    getResponseHeader: (/** @type {string} */ name) => headers[name.toLowerCase()] || null,
  };
}

describe('httpFailure', () => {
  it('reads the code, the message and the exam from the XHR cornerstone rejects with', () => {
    const body = new TextEncoder().encode(JSON.stringify(BODY)).buffer;
    assert.deepEqual(httpFailure(xhr(502, { 'x-error-code': 'E503' }, body)), {
      status: 502,
      code: 'E503',
      message: BODY.message,
      contactSite: true,
      studyUid: STUDY,
      seriesUid: SERIES,
    });
  });
  it("reads the DICOMweb client's Error: status, its request, its parsed body", () => {
    const error = Object.assign(new Error('request failed'), {
      status: 504,
      request: xhr(504, {}, null),
      response: { code: 'E504', message: "Le serveur d'images n'a pas répondu à temps.", contact_site: true },
    });
    const failure = httpFailure(error);
    assert.equal(failure && failure.code, 'E504');
    assert.equal(failure && failure.contactSite, true);
  });
  it('takes a session end for what it is: 401 E401, nothing for the site to do', () => {
    const body = JSON.stringify({ code: 'E401', message: 'Votre session a expiré.' });
    const failure = httpFailure(xhr(401, { 'x-error-code': 'E401' }, body));
    assert.equal(failure && failure.status, 401);
    assert.equal(failure && failure.contactSite, false);
  });
  it("reads the streaming loader's message: the status and the URL, no code", () => {
    const error = new Error(`Couldn't retrieve ${FRAME_URL} got status 502`);
    assert.deepEqual(httpFailure(error), {
      status: 502,
      code: '',
      message: '',
      contactSite: true, // a gateway failure without our body: the PACS's
      studyUid: STUDY,
      seriesUid: SERIES,
    });
  });
  it('ignores what is not an HTTP failure: cancelled requests, successes, strings', () => {
    assert.equal(httpFailure(xhr(0, {}, null)), null);
    assert.equal(httpFailure(xhr(200, {}, null)), null);
    assert.equal(httpFailure('request failed'), null);
    assert.equal(httpFailure(null), null);
    assert.equal(httpFailure(new Error('boom')), null);
  });
  it('keeps a failure outside the PACS out of the "contact the site" case', () => {
    const body = JSON.stringify({ code: 'E429', message: 'Trop de demandes en cours.' });
    const failure = httpFailure(xhr(429, { 'x-error-code': 'E429' }, body));
    assert.equal(failure && failure.contactSite, false);
  });
});

describe('errorBody', () => {
  it('reads JSON as text, bytes or an object, and nothing else', () => {
    assert.deepEqual(errorBody('{"code":"E505"}'), { code: 'E505' });
    assert.deepEqual(errorBody(new TextEncoder().encode('{"code":"E505"}').buffer), { code: 'E505' });
    assert.deepEqual(errorBody({ code: 'E505' }), { code: 'E505' });
    assert.deepEqual(errorBody('--boundary\r\n'), {});
    assert.deepEqual(errorBody(['E505']), {});
    assert.deepEqual(errorBody(null), {});
  });
});

describe('uidsOfUrl', () => {
  it('names the exam and the series of a DICOMweb URL, nothing of another', () => {
    assert.deepEqual(uidsOfUrl(FRAME_URL), { studyUid: STUDY, seriesUid: SERIES });
    assert.deepEqual(uidsOfUrl(`/dicomweb/studies/${STUDY}/series?x=1`), { studyUid: STUDY, seriesUid: '' });
    assert.deepEqual(uidsOfUrl(`/dicomweb/studies?StudyInstanceUID=${STUDY}`), { studyUid: '', seriesUid: '' });
    assert.deepEqual(uidsOfUrl('/api/progress'), { studyUid: '', seriesUid: '' });
  });
});

describe('withSeriesError', () => {
  const codeless = { status: 502, code: '', message: '', contactSite: true, studyUid: STUDY, seriesUid: SERIES };
  it("tells a code-less failure by its series' error in the progress", () => {
    const series = [{ series_uid: SERIES, received: 0, complete: false, error: BODY }];
    const told = withSeriesError(codeless, series);
    assert.equal(told.code, 'E503');
    assert.equal(told.message, BODY.message);
  });
  it('keeps a failure that has its code, or whose series reports nothing', () => {
    const coded = { ...codeless, code: 'E505', message: 'Illisible.' };
    assert.equal(withSeriesError(coded, [{ series_uid: SERIES, received: 0, complete: false, error: BODY }]), coded);
    assert.equal(withSeriesError(codeless, [{ series_uid: SERIES, received: 1, complete: false }]), codeless);
  });
});
