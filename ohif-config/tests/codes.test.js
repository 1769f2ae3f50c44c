// @ts-check
// The code tables of the page around OHIF (panel/codes.js).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  INS_OID_NAMES,
  SERVED_TRANSFER_SYNTAXES,
  insAuthorityName,
  isServedTransferSyntax,
  unsupportedSopClassName,
} from '../panel/codes.js';

describe('transfer syntaxes the BFF serves', () => {
  it('are what the BFF sends: its lossy targets and what it passes through', () => {
    for (const uid of ['1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.203', '1.2.840.10008.1.2.4.201']) {
      assert.ok(isServedTransferSyntax(uid), uid);
    }
    for (const suffix of ['1', '5', '4.50', '4.51', '4.57', '4.70', '4.80', '4.90', '4.91', '4.202']) {
      assert.ok(isServedTransferSyntax('1.2.840.10008.1.2.' + suffix), suffix);
    }
    for (let n = 100; n <= 108; n++) assert.ok(isServedTransferSyntax('1.2.840.10008.1.2.4.' + n), String(n));
    assert.equal(SERVED_TRANSFER_SYNTAXES.size, 22);
  });
  it('leave out the others, and only whole UIDs match', () => {
    for (const uid of [
      '1.2.840.10008.1.2', // implicit VR: never what the BFF serves
      '1.2.840.10008.1.2.2', // big endian
      '1.2.840.10008.1.2.4.92', // JPEG 2000 multi-component
      '1.2.840.10008.1.2.4.109',
      '1.2.840.10008.1.2.4.810',
      ' 1.2.840.10008.1.2.4.81',
      '',
    ]) {
      assert.ok(!isServedTransferSyntax(uid), uid);
    }
    assert.ok(!isServedTransferSyntax(undefined));
  });
});

describe('SOP classes the viewer cannot show', () => {
  it('are named in French, exact UIDs and families', () => {
    assert.equal(unsupportedSopClassName('1.2.840.10008.5.1.4.1.1.66'), 'Données brutes');
    assert.equal(unsupportedSopClassName('1.2.840.10008.5.1.4.1.1.66.1'), 'Recalage spatial');
    assert.equal(unsupportedSopClassName('1.2.840.10008.5.1.4.1.1.66.5'), 'Segmentation surfacique');
    assert.equal(unsupportedSopClassName('1.2.840.10008.5.1.4.1.1.11.1'), 'État de présentation');
    assert.equal(unsupportedSopClassName('1.2.840.10008.5.1.4.1.1.88.11'), 'Rapport structuré');
    assert.equal(unsupportedSopClassName('1.2.840.10008.5.1.4.1.1.9.1.1'), "Tracé (forme d'onde)");
    assert.equal(unsupportedSopClassName('1.2.840.10008.5.1.4.1.1.104.1'), 'Document encapsulé');
    assert.equal(unsupportedSopClassName('1.2.840.10008.5.1.4.1.1.481.2'), 'Objet de radiothérapie');
  });
  it('else say "objet DICOM" with the modality', () => {
    assert.equal(unsupportedSopClassName('1.2.840.10008.5.1.4.1.1.66.4', 'SEG'), 'objet DICOM SEG');
    assert.equal(unsupportedSopClassName('1.2.840.10008.5.1.4.1.1.6611'), 'objet DICOM');
    // A family prefix needs its dot: 1.2.840.10008.5.1.4.1.1.110 is not in "...1.1.11.".
    assert.equal(unsupportedSopClassName('1.2.840.10008.5.1.4.1.1.110', 'XX'), 'objet DICOM XX');
  });
});

describe('INS authorities', () => {
  it('are named by OID', () => {
    assert.deepEqual(Object.values(INS_OID_NAMES), ['NIR', 'NIA', 'NIR (test)', 'NIA (test)']);
    assert.equal(insAuthorityName('1.2.250.1.213.1.4.8'), 'NIR');
    assert.equal(insAuthorityName('9.9'), 'OID 9.9');
  });
});
