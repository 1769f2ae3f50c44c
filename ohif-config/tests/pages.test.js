// @ts-check
// The pure parts of the page's other modules: which exams the identity shows, the
// objects listed as not displayable, the slab thickness typed, the URL after a choice.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { studiesInUrl } from '../panel/api.js';
import { shownStudies } from '../panel/identity.js';
import { viewerUrlFor } from '../panel/series-choice.js';
import { DEFAULT_THICKNESS_MM, slabThicknessMm } from '../panel/tools.js';
import { unsupportedLines } from '../panel/unsupported.js';

describe('studiesInUrl', () => {
  it('reads the exams of the URL, in order', () => {
    assert.deepEqual(studiesInUrl('?StudyInstanceUIDs=1.2,3.4&hangingProtocolId=x'), ['1.2', '3.4']);
    assert.deepEqual(studiesInUrl('?StudyInstanceUIDs='), []);
    assert.deepEqual(studiesInUrl(''), []);
  });
});

describe('shownStudies', () => {
  const a = { study_uid: 'a' };
  const b = { study_uid: 'b' };
  it("shows the URL's exams in the URL's order", () => {
    assert.deepEqual(shownStudies([a, b], ['b', 'a']), [b, a]);
    assert.deepEqual(shownStudies([a, b], ['b', 'unknown']), [b]);
  });
  it('falls back on the first granted exam', () => {
    assert.deepEqual(shownStudies([a, b], ['unknown']), [a]);
    assert.deepEqual(shownStudies([], ['a']), []);
  });
});

describe('unsupportedLines (DB.VI-CS.30)', () => {
  it('lists what OHIF marks unsupported and images in a syntax the BFF does not serve', () => {
    const lines = unsupportedLines([
      { displaySetInstanceUID: 'd1', unsupported: true, SOPClassUID: '1.2.840.10008.5.1.4.1.1.66', SeriesDescription: 'Données brutes' },
      {
        displaySetInstanceUID: 'd2',
        SeriesDescription: 'Syntaxe non prise en charge',
        instances: [{ TransferSyntaxUID: '1.2.840.10008.1.2.4.92', Rows: 64 }],
      },
      { displaySetInstanceUID: 'd3', instances: [{ TransferSyntaxUID: '1.2.840.10008.1.2.4.81', Rows: 64 }] },
      { displaySetInstanceUID: 'd4', unsupported: true, Modality: 'SEG', SeriesNumber: 7, instance: { SOPClassUID: '1.2.3' } },
      { displaySetInstanceUID: 'd5', instances: [{ TransferSyntaxUID: '1.2.840.10008.1.2.4.92' }] }, // no pixels
    ]);
    assert.deepEqual(lines, [
      { uid: 'd1', series: 'Données brutes', text: 'Cet objet (Données brutes) ne peut pas être affiché dans la visionneuse.' },
      {
        uid: 'd2',
        series: 'Syntaxe non prise en charge',
        text: 'Cette image (syntaxe de transfert 1.2.840.10008.1.2.4.92) ne peut pas être affichée dans la visionneuse.',
      },
      { uid: 'd4', series: 'Série 7', text: 'Cet objet (objet DICOM SEG) ne peut pas être affiché dans la visionneuse.' },
    ]);
    assert.deepEqual(unsupportedLines(undefined), []);
  });
});

describe('slabThicknessMm', () => {
  it('reads the thickness typed, with a French decimal comma', () => {
    assert.equal(slabThicknessMm('30'), 30);
    assert.equal(slabThicknessMm('12,5'), 12.5);
  });
  it('falls back on the default for anything else', () => {
    for (const text of ['', 'abc', '0', '-3']) assert.equal(slabThicknessMm(text), DEFAULT_THICKNESS_MM, text);
  });
});

describe('viewerUrlFor', () => {
  it('reopens the viewer on the chosen series', () => {
    assert.equal(viewerUrlFor('1.2', '1.2.3'), '/viewer?StudyInstanceUIDs=1.2&initialSeriesInstanceUID=1.2.3');
  });
});
