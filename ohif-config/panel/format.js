// @ts-check
// The French texts of the page around OHIF, built from plain data (pure: no DOM, no
// network; tested by tests/format.test.js).
import { SEX_NAMES, insAuthorityName } from './codes.js';

/** @typedef {import('./api.js').Study} Study */
/** @typedef {import('./api.js').SeriesProgress} SeriesProgress */
/** @typedef {import('./api.js').DicomJson} DicomJson */

/**
 * DICOM DA 'YYYYMMDD' as 'JJ/MM/AAAA'; anything else unchanged ('' for nothing).
 * @param {string | undefined} yyyymmdd
 * @returns {string}
 */
export function frenchDate(yyyymmdd) {
  if (!yyyymmdd || !/^\d{8}$/.test(yyyymmdd)) return yyyymmdd || '';
  return yyyymmdd.slice(6, 8) + '/' + yyyymmdd.slice(4, 6) + '/' + yyyymmdd.slice(0, 4);
}

/**
 * The matricule INS with its authority: '279035121518989 (NIR)'; '' without one.
 * @param {string | undefined} ins
 * @param {string | undefined} oid
 * @returns {string}
 */
export function insText(ins, oid) {
  if (!ins) return '';
  return oid ? ins + ' (' + insAuthorityName(oid) + ')' : ins;
}

/**
 * The practice's local patient id with its issuer: 'CAB-000042 (CABINET-DUPONT)'.
 * @param {string | undefined} id
 * @param {string | undefined} issuer
 * @returns {string}
 */
export function localIdText(id, issuer) {
  if (!id) return '';
  return issuer ? id + ' (' + issuer + ')' : id;
}

/**
 * The identity rows of an exam (DB.VI-CS.29), in order, without the empty ones.
 * @param {Study} study
 * @returns {Array<[string, string]>} [label, value]
 */
export function identityFields(study) {
  /** @type {Array<[string, string | undefined]>} */
  const fields = [
    ['Nom de naissance', study.birth_name],
    ['Prénom(s) de naissance', (study.given_names || []).join(' ')],
    ['Sexe', (study.sex && SEX_NAMES[study.sex]) || study.sex],
    ['Date de naissance', frenchDate(study.birth_date)],
    ['Lieu de naissance (code INSEE)', study.birthplace],
    ['Matricule INS', insText(study.ins, study.ins_oid)],
    ['Établissement', study.institution],
    ["N° d'examen", study.accession_number],
    // DB.VI-CS.32: the practice's own id, found by the INS in its PACS; the Source's
    // stays visible beside it (only when a local id was found).
    ['Identifiant patient local', localIdText(study.local_patient_id, study.local_patient_issuer)],
    ['Identifiant à la source', study.local_patient_id ? study.source_patient_id : undefined],
  ];
  return /** @type {Array<[string, string]>} */ (fields.filter(([, value]) => value));
}

/**
 * The badge's text: 'Patient : PAT-TROIS DOMINIQUE'.
 * @param {Study} study
 * @returns {string}
 */
export function patientBadge(study) {
  const name = [study.birth_name, (study.given_names || []).join(' ')].join(' ').trim();
  return 'Patient : ' + name;
}

/**
 * The heading of one exam's identity when the page shows several: 'Examen 2 (n° ACN)'.
 * @param {Study} study
 * @param {number} index 0-based
 * @returns {string}
 */
export function examHeading(study, index) {
  return 'Examen ' + (index + 1) + (study.accession_number ? ' (n° ' + study.accession_number + ')' : '');
}

/** What the download button's title and the dialog's hint say (DB.VI-SO.176). */
export const DOWNLOAD_HINT =
  'Archive ZIP au format DICOM (avec DICOMDIR, pour clé USB), images ' +
  "sans perte. Sa taille n'est pas connue à l'avance : la progression s'affiche " +
  "dans les téléchargements du navigateur. Un examen de plusieurs centaines d'images " +
  'peut peser plusieurs centaines de mégaoctets.';

/**
 * The download button's label; with several exams, each names its accession number.
 * @param {Study} study
 * @param {boolean} several
 * @returns {string}
 */
export function downloadLabel(study, several) {
  return "Télécharger l'examen" + (several && study.accession_number ? ' ' + study.accession_number : '');
}

/** A series not pulled yet, in the progress box (series-level opening, DB.VI-CS.05). */
export const ON_DEMAND = 'téléchargée quand vous affichez la série';

/**
 * One line of the progress box (DB.VI-CS.18): images received out of the total, or the
 * series' error with its code (DB.VI-CO.27), or that it comes once displayed.
 * @param {SeriesProgress} series
 * @param {number} index 0-based, names a series without a description
 * @returns {{error: boolean, text: string, percent: number}}
 */
export function progressLine(series, index) {
  const name = series.description || 'Série ' + (index + 1);
  if (series.error) {
    return { error: true, text: name + ' — ' + series.error.code + ' : ' + series.error.message, percent: 0 };
  }
  const total = series.total || 0;
  if (series.on_demand) {
    // A series-level opening (DB.VI-CS.05): this series comes when the user displays it.
    return { error: false, text: name + ' : ' + ON_DEMAND, percent: 0 };
  }
  const text =
    name + ' : ' + series.received + (total ? ' / ' + total : '') + ' images' +
    (series.complete ? ' — terminé' : '');
  const percent = total ? Math.min(100, Math.round((100 * series.received) / total)) : 0;
  return { error: false, text, percent };
}

/**
 * The first value of a DICOM JSON attribute ('0020000E'), if any.
 * @param {DicomJson} row
 * @param {string} tag
 * @returns {unknown}
 */
export function tagValue(row, tag) {
  return ((row[tag] || {}).Value || [])[0];
}

/**
 * A series as the choice at opening lists it: 'Série 2 — Thorax (CT, 6 images)'.
 * @param {DicomJson} row a QIDO-RS series row
 * @returns {string}
 */
export function seriesChoiceLabel(row) {
  const number = tagValue(row, '00200011');
  const description = tagValue(row, '0008103E');
  const modality = tagValue(row, '00080060');
  const count = tagValue(row, '00201209');
  const details = [modality, count ? count + (Number(count) > 1 ? ' images' : ' image') : '']
    .filter((d) => d)
    .join(', ');
  return (
    'Série ' + (number === undefined || number === null ? '?' : number) +
    (description ? ' — ' + description : '') + (details ? ' (' + details + ')' : '')
  );
}

/**
 * Orders series rows by Series Number, those without one last.
 * @param {DicomJson} a
 * @param {DicomJson} b
 * @returns {number}
 */
export function bySeriesNumber(a, b) {
  const key = (/** @type {DicomJson} */ row) => {
    const n = Number(tagValue(row, '00200011'));
    return Number.isFinite(n) ? n : Infinity;
  };
  const na = key(a);
  const nb = key(b);
  return na === nb ? 0 : na - nb;
}

/** DB.VI-SO.28: what the user is asked when only the producing site can mend a failure. */
const RETRY = 'Veuillez réessayer plus tard.';

/**
 * The invitation to contact the site that produced the exam, named from its KOS
 * (DB.VI-SO.28): 'Veuillez réessayer plus tard. Si le problème persiste, prenez contact
 * avec le site qui a réalisé l'examen : Centre de radiologie Ambroise.'
 * @param {string | undefined} site the KOS's Institution Name ('' when unknown)
 * @returns {string}
 */
export function contactSiteText(site) {
  const whom = site ? ' : ' + site : " (centre ou service d'imagerie)";
  return RETRY + " Si le problème persiste, prenez contact avec le site qui a réalisé l'examen" + whom + '.';
}

/** Our messages by HTTP status, for an answer that did not carry one (a streamed frame). */
const STATUS_MESSAGES = Object.freeze({
  502: "Le serveur d'images a renvoyé une erreur.",
  503: 'Le service est momentanément indisponible.',
  504: "Le serveur d'images n'a pas répondu à temps.",
});

/**
 * One failure's line: 'E503 : Le serveur d'images est injoignable.'
 * @param {{status: number, code: string, message: string}} failure
 * @returns {string}
 */
export function failureLine(failure) {
  const known = /** @type {Record<number, string>} */ (STATUS_MESSAGES)[failure.status];
  const message = failure.message || known || 'La demande a échoué (erreur HTTP ' + failure.status + ').';
  return (failure.code || 'HTTP ' + failure.status) + ' : ' + message;
}

/**
 * What the viewer says once the session has ended (issue 14), and how to open the exam
 * again: from the report link (a patient, or a professional who came by it), or from the
 * Consumer DRIMbox's page.
 * @param {string | undefined} profile 'patient' | 'professional'
 * @param {string | undefined} reopen 'report' | 'consumer'
 * @returns {{title: string, lines: string[], link: {href: string, text: string} | null}}
 */
export function sessionEndTexts(profile, reopen) {
  const why =
    'Pour protéger les données de santé, la session se ferme après une période ' +
    "d'inactivité, ou quand vous vous déconnectez (dans un autre onglet, par exemple). " +
    "Les images ne sont plus affichées et plus aucune n'est demandée.";
  if (reopen === 'consumer') {
    return {
      title: 'Votre session a pris fin',
      lines: [
        why,
        "Pour revoir l'examen, revenez à la page de la DRIMbox Consommatrice et ouvrez-le " +
          'à nouveau depuis votre logiciel ou le DMP.',
      ],
      link: { href: '/consumer', text: 'Revenir à la DRIMbox Consommatrice' },
    };
  }
  const again =
    profile === 'patient'
      ? 'Pour revoir vos images, rouvrez le lien figurant dans votre compte rendu ' +
        "d'imagerie, puis identifiez-vous à nouveau avec FranceConnect+."
      : "Pour revoir l'examen, rouvrez le lien du compte rendu d'imagerie, puis " +
        'identifiez-vous à nouveau avec Pro Santé Connect.';
  return { title: 'Votre session a pris fin', lines: [why, again], link: null };
}

/**
 * Beside the logout offered once the session has ended (issue 14): the identity
 * provider's session may still be open (the logout ends it there too).
 * @param {string | undefined} profile 'patient' | 'professional'
 * @returns {string}
 */
export function logoutHint(profile) {
  const accounts = /** @type {Record<string, string>} */ ({
    patient: 'FranceConnect',
    professional: 'Pro Santé Connect',
  });
  const account = accounts[profile || ''] || 'FranceConnect ou Pro Santé Connect';
  return 'Sur un ordinateur partagé, déconnectez-vous aussi de votre compte ' + account + ' :';
}
