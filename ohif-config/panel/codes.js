// @ts-check
// Code tables of the page around OHIF, and their look-ups (pure: no DOM, no network).
// The transfer syntaxes the BFF serves live here and only here in ohif-config/.

/** Administrative sex (0010,0040) as the KOS gives it, in French. */
export const SEX_NAMES = Object.freeze(
  /** @type {Record<string, string>} */ ({ F: 'Féminin', M: 'Masculin', O: 'Autre', U: 'Inconnu' })
);

/** Assigning authorities of the INS (matricule INS), by OID. */
export const INS_OID_NAMES = Object.freeze(
  /** @type {Record<string, string>} */ ({
    '1.2.250.1.213.1.4.8': 'NIR',
    '1.2.250.1.213.1.4.9': 'NIA',
    '1.2.250.1.213.1.4.10': 'NIR (test)',
    '1.2.250.1.213.1.4.11': 'NIA (test)',
  })
);

/**
 * SOP classes stock OHIF 3.13.2 cannot show, named in French (DB.VI-CS.30). An entry
 * ending with '.' is a prefix (a family of SOP classes); the first match wins.
 * @type {ReadonlyArray<readonly [string, string]>}
 */
export const UNSUPPORTED_SOP_CLASSES = Object.freeze([
  ['1.2.840.10008.5.1.4.1.1.66.1', 'Recalage spatial'],
  ['1.2.840.10008.5.1.4.1.1.66.2', 'Repères (fiducials)'],
  ['1.2.840.10008.5.1.4.1.1.66.3', 'Recalage déformable'],
  ['1.2.840.10008.5.1.4.1.1.66.5', 'Segmentation surfacique'],
  ['1.2.840.10008.5.1.4.1.1.66', 'Données brutes'],
  ['1.2.840.10008.5.1.4.1.1.11.', 'État de présentation'],
  ['1.2.840.10008.5.1.4.1.1.88.', 'Rapport structuré'],
  ['1.2.840.10008.5.1.4.1.1.9.', "Tracé (forme d'onde)"],
  ['1.2.840.10008.5.1.4.1.1.104.', 'Document encapsulé'],
  ['1.2.840.10008.5.1.4.1.1.481.', 'Objet de radiothérapie'],
]);

/**
 * The transfer syntaxes the BFF serves frames in (docs/transcoding.md): any other syntax
 * in the metadata means the BFF could not transcode the instance.
 * @type {ReadonlySet<string>}
 */
export const SERVED_TRANSFER_SYNTAXES = new Set([
  '1.2.840.10008.1.2.1', // Explicit VR Little Endian
  '1.2.840.10008.1.2.5', // RLE Lossless
  '1.2.840.10008.1.2.4.50', // JPEG baseline
  '1.2.840.10008.1.2.4.51', // JPEG extended (12 bits)
  '1.2.840.10008.1.2.4.57', // JPEG lossless
  '1.2.840.10008.1.2.4.70', // JPEG lossless, first-order prediction
  '1.2.840.10008.1.2.4.80', // JPEG-LS lossless
  '1.2.840.10008.1.2.4.81', // JPEG-LS near-lossless
  '1.2.840.10008.1.2.4.90', // JPEG 2000 lossless
  '1.2.840.10008.1.2.4.91', // JPEG 2000
  '1.2.840.10008.1.2.4.201', // HTJ2K lossless
  '1.2.840.10008.1.2.4.202', // HTJ2K lossless RPCL
  '1.2.840.10008.1.2.4.203', // HTJ2K
  // MPEG-2, MPEG-4 and HEVC video, passed through
  '1.2.840.10008.1.2.4.100',
  '1.2.840.10008.1.2.4.101',
  '1.2.840.10008.1.2.4.102',
  '1.2.840.10008.1.2.4.103',
  '1.2.840.10008.1.2.4.104',
  '1.2.840.10008.1.2.4.105',
  '1.2.840.10008.1.2.4.106',
  '1.2.840.10008.1.2.4.107',
  '1.2.840.10008.1.2.4.108',
]);

/**
 * The INS authority's name for an OID, else "OID <oid>".
 * @param {string} oid
 * @returns {string}
 */
export function insAuthorityName(oid) {
  return INS_OID_NAMES[oid] || 'OID ' + oid;
}

/**
 * The French name of a SOP class the viewer cannot show, else "objet DICOM <modality>".
 * @param {string} sopClassUid
 * @param {string} [modality]
 * @returns {string}
 */
export function unsupportedSopClassName(sopClassUid, modality) {
  for (const [prefix, name] of UNSUPPORTED_SOP_CLASSES) {
    if (sopClassUid === prefix || (prefix.endsWith('.') && sopClassUid.startsWith(prefix))) {
      return name;
    }
  }
  return 'objet DICOM' + (modality ? ' ' + modality : '');
}

/**
 * Whether the BFF serves frames in this transfer syntax.
 * @param {unknown} transferSyntaxUid
 * @returns {boolean}
 */
export function isServedTransferSyntax(transferSyntaxUid) {
  return SERVED_TRANSFER_SYNTAXES.has(String(transferSyntaxUid));
}
