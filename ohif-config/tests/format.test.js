// @ts-check
// The French texts of the page around OHIF (panel/format.js), as the Chromium tests and
// the users see them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  DOWNLOAD_HINT,
  bySeriesNumber,
  contactSiteText,
  failureLine,
  downloadLabel,
  examHeading,
  frenchDate,
  identityFields,
  insText,
  patientBadge,
  progressLine,
  seriesChoiceLabel,
  tagValue,
} from '../panel/format.js';

/** @typedef {import('../panel/api.js').DicomJson} DicomJson */

/** The demo patient of scripts/demo, as /api/session gives her. */
const DOMINIQUE = {
  study_uid: '1.2.3',
  birth_name: 'PAT-TROIS',
  given_names: ['DOMINIQUE', 'MARIE'],
  sex: 'F',
  birth_date: '19790328',
  birthplace: '63220',
  ins: '279035121518989',
  ins_oid: '1.2.250.1.213.1.4.10',
  institution: 'Centre de radiologie Ambroise',
  accession_number: 'ACN101',
};

/**
 * A QIDO-RS series row.
 * @param {Record<string, unknown>} values tag -> value
 * @returns {DicomJson}
 */
function row(values) {
  return Object.fromEntries(Object.entries(values).map(([tag, value]) => [tag, { Value: [value] }]));
}

describe('frenchDate', () => {
  it('writes a DICOM date day first', () => {
    assert.equal(frenchDate('19790328'), '28/03/1979');
  });
  it('leaves anything else as it is', () => {
    assert.equal(frenchDate('1979-03-28'), '1979-03-28');
    assert.equal(frenchDate('197903'), '197903');
    assert.equal(frenchDate(''), '');
    assert.equal(frenchDate(undefined), '');
  });
});

describe('insText', () => {
  it('names the INS authorities', () => {
    assert.equal(insText('279035121518989', '1.2.250.1.213.1.4.8'), '279035121518989 (NIR)');
    assert.equal(insText('1', '1.2.250.1.213.1.4.9'), '1 (NIA)');
    assert.equal(insText('1', '1.2.250.1.213.1.4.10'), '1 (NIR (test))');
    assert.equal(insText('1', '1.2.250.1.213.1.4.11'), '1 (NIA (test))');
  });
  it('shows an unknown authority by its OID, and no authority without one', () => {
    assert.equal(insText('1', '1.2.3.4'), '1 (OID 1.2.3.4)');
    assert.equal(insText('1', undefined), '1');
    assert.equal(insText(undefined, '1.2.250.1.213.1.4.8'), '');
  });
});

describe('identityFields', () => {
  it('lists the KOS identity in order, in French', () => {
    assert.deepEqual(identityFields(DOMINIQUE), [
      ['Nom de naissance', 'PAT-TROIS'],
      ['Prénom(s) de naissance', 'DOMINIQUE MARIE'],
      ['Sexe', 'Féminin'],
      ['Date de naissance', '28/03/1979'],
      ['Lieu de naissance (code INSEE)', '63220'],
      ['Matricule INS', '279035121518989 (NIR (test))'],
      ['Établissement', 'Centre de radiologie Ambroise'],
      ["N° d'examen", 'ACN101'],
    ]);
  });

  it("adds the practice's local id and the Source's when one was found (DB.VI-CS.32)", () => {
    const study = {
      ...DOMINIQUE,
      local_patient_id: 'CAB-000042',
      local_patient_issuer: 'CABINET-DUPONT',
      source_patient_id: '279035121518989',
    };
    assert.deepEqual(identityFields(study).slice(-2), [
      ['Identifiant patient local', 'CAB-000042 (CABINET-DUPONT)'],
      ['Identifiant à la source', '279035121518989'],
    ]);
    // Without a local id, the Source's id is not repeated (the INS row shows it).
    const none = { ...DOMINIQUE, source_patient_id: '279035121518989' };
    assert.equal(identityFields(none).length, identityFields(DOMINIQUE).length);
  });
  it('names every administrative sex, keeps an unknown code, leaves out what is missing', () => {
    const names = ['F', 'M', 'O', 'U', 'X'].map(
      (sex) => identityFields({ study_uid: '1', sex }).find(([label]) => label === 'Sexe')
    );
    assert.deepEqual(names.map((field) => field && field[1]), ['Féminin', 'Masculin', 'Autre', 'Inconnu', 'X']);
    assert.deepEqual(identityFields({ study_uid: '1', birth_name: 'SEUL' }), [['Nom de naissance', 'SEUL']]);
  });
});

describe('the other identity texts', () => {
  it('writes the badge, the headings and the download labels', () => {
    assert.equal(patientBadge(DOMINIQUE), 'Patient : PAT-TROIS DOMINIQUE MARIE');
    assert.equal(patientBadge({ study_uid: '1' }), 'Patient : ');
    assert.equal(examHeading(DOMINIQUE, 1), 'Examen 2 (n° ACN101)');
    assert.equal(examHeading({ study_uid: '1' }, 0), 'Examen 1');
    assert.equal(downloadLabel(DOMINIQUE, false), "Télécharger l'examen");
    assert.equal(downloadLabel(DOMINIQUE, true), "Télécharger l'examen ACN101");
    assert.match(DOWNLOAD_HINT, /clé USB/);
    assert.match(DOWNLOAD_HINT, /taille n'est pas connue/);
  });
});

describe('progressLine', () => {
  const series = { series_uid: '1.2', description: 'Thorax-abdomen', received: 12, total: 40, complete: false };
  it('counts the images received out of the total', () => {
    assert.deepEqual(progressLine(series, 0), { error: false, text: 'Thorax-abdomen : 12 / 40 images', percent: 30 });
  });
  it('says when a series is complete, and names one without a description', () => {
    const done = { ...series, description: '', received: 40, complete: true };
    assert.deepEqual(progressLine(done, 1), { error: false, text: 'Série 2 : 40 / 40 images — terminé', percent: 100 });
  });
  it('counts without a total, and never past 100 %', () => {
    assert.deepEqual(progressLine({ ...series, total: null }, 0), {
      error: false,
      text: 'Thorax-abdomen : 12 images',
      percent: 0,
    });
    assert.equal(progressLine({ ...series, received: 41 }, 0).percent, 100);
  });
  it('says when a series comes only once displayed (series-level opening, DB.VI-CS.05)', () => {
    assert.deepEqual(progressLine({ ...series, received: 0, on_demand: true }, 0), {
      error: false,
      text: 'Thorax-abdomen : téléchargée quand vous affichez la série',
      percent: 0,
    });
  });
  it('shows an error with its code', () => {
    const failed = { ...series, error: { code: 'E204', message: 'Accès refusé par la DRIMbox Source.' } };
    assert.deepEqual(progressLine(failed, 0), {
      error: true,
      text: 'Thorax-abdomen — E204 : Accès refusé par la DRIMbox Source.',
      percent: 0,
    });
  });
});

describe('series rows', () => {
  const thorax = row({ '0020000E': '1.2.2', '00200011': 2, '0008103E': 'Thorax', '00080060': 'CT', '00201209': 6 });
  it('reads the first value of a tag', () => {
    assert.equal(tagValue(thorax, '00080060'), 'CT');
    assert.equal(tagValue(thorax, '00100010'), undefined);
    assert.equal(tagValue({ '00100010': { vr: 'PN' } }, '00100010'), undefined);
  });
  it('labels a series for the choice at opening', () => {
    assert.equal(seriesChoiceLabel(thorax), 'Série 2 — Thorax (CT, 6 images)');
    assert.equal(seriesChoiceLabel(row({ '00200011': 1, '00080060': 'DX', '00201209': 1 })), 'Série 1 (DX, 1 image)');
    assert.equal(seriesChoiceLabel(row({})), 'Série ?');
  });
  it('orders series by number, those without one last', () => {
    const rows = [row({ '00200011': 3 }), row({}), row({ '00200011': 1 }), row({ '00200011': 'x' }), row({ '00200011': 2 })];
    assert.deepEqual(
      rows.sort(bySeriesNumber).map((r) => tagValue(r, '00200011')),
      [1, 2, 3, undefined, 'x']
    );
  });
});

describe('contactSiteText (DB.VI-SO.28)', () => {
  it('asks to contact the site that produced the exam, by its name from the KOS', () => {
    assert.equal(
      contactSiteText('Centre de radiologie Ambroise'),
      'Veuillez réessayer plus tard. Si le problème persiste, prenez contact avec le site ' +
        "qui a réalisé l'examen : Centre de radiologie Ambroise."
    );
  });
  it('says which kind of site when the KOS names none', () => {
    assert.match(contactSiteText(''), /le site qui a réalisé l'examen \(centre ou service d'imagerie\)\.$/);
  });
});

describe('failureLine', () => {
  it("shows our code and French message as the BFF sent them", () => {
    const line = failureLine({ status: 502, code: 'E503', message: "Le serveur d'images est injoignable." });
    assert.equal(line, "E503 : Le serveur d'images est injoignable.");
  });
  it('says something French even when the answer carried nothing of ours', () => {
    assert.equal(failureLine({ status: 504, code: '', message: '' }), "HTTP 504 : Le serveur d'images n'a pas répondu à temps.");
    assert.match(failureLine({ status: 418, code: '', message: '' }), /^HTTP 418 : La demande a échoué/);
  });
});
