// @ts-check
// The French texts of the export to the practice's PACS (panel/pacs-export.js,
// DB.VI-CO.42), as the users see them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { EXPORT_LABEL, exportStatusText, refusalText } from '../panel/pacs-export.js';

/** @returns {import('../panel/api.js').PacsExportJob} */
function job(/** @type {Partial<import('../panel/api.js').PacsExportJob>} */ over) {
  return {
    id: 'j',
    study_uid: '1.2.3',
    series_uid: null,
    destination: 'PACS du cabinet',
    state: 'running',
    total: 41,
    sent: 12,
    refused: 0,
    code: null,
    message: 'Export en cours vers PACS du cabinet : 12 images envoyées sur 41.',
    ...over,
  };
}

describe('pacs export texts', () => {
  it('names the button in French', () => {
    assert.equal(EXPORT_LABEL, 'Exporter vers le PACS');
  });

  it("shows the BFF's progress and result as they are", () => {
    assert.equal(exportStatusText(job({})), 'Export en cours vers PACS du cabinet : 12 images envoyées sur 41.');
    const done = job({ state: 'done', sent: 41, message: 'Export terminé : 41 images envoyées à PACS du cabinet.' });
    assert.equal(exportStatusText(done), 'Export terminé : 41 images envoyées à PACS du cabinet.');
  });

  it('puts the code before a failure', () => {
    const failed = job({ state: 'failed', code: 'E462', message: 'Le PACS de destination est injoignable.' });
    assert.equal(exportStatusText(failed), 'E462 — Le PACS de destination est injoignable.');
  });

  it('says a refusal to start with its code, and no answer at all', () => {
    assert.equal(
      refusalText({ status: 429, code: 'E461', message: 'Un export vers le PACS est déjà en cours.' }),
      'E461 — Un export vers le PACS est déjà en cours.',
    );
    assert.equal(refusalText({ status: 0 }), "Le serveur n'a pas répondu. Veuillez réessayer.");
    assert.equal(refusalText({ status: 500 }), "L'export n'a pas pu démarrer.");
  });
});
