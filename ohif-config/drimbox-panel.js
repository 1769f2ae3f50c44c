// drimbox-viewer: what the BFF shows around the stock OHIF viewer (never inside it).
// Loaded by app-config.js. Reads /api/session (same origin, HttpOnly cookie; no token is
// ever exposed to this script) and shows, on opening, the patient's INS identity traits
// and the institution taken from the exam's KOS (DB.VI-CS.29), reachable again at any
// time from a button, and a "Télécharger l'examen" button (ZIP, DB.VI-SO.176). All text
// goes through textContent: nothing is parsed as HTML.
// The exams the page shows: the StudyInstanceUIDs of its URL (shared by the parts below).
function drimboxStudiesInUrl() {
  var value = new URLSearchParams(window.location.search).get('StudyInstanceUIDs') || '';
  return value.split(',').filter(function (uid) { return uid; });
}

(function () {
  'use strict';

  var SEX = { F: 'Féminin', M: 'Masculin', O: 'Autre', U: 'Inconnu' };
  var INS_OIDS = {
    '1.2.250.1.213.1.4.8': 'NIR',
    '1.2.250.1.213.1.4.9': 'NIA',
    '1.2.250.1.213.1.4.10': 'NIR (test)',
    '1.2.250.1.213.1.4.11': 'NIA (test)',
  };

  function frenchDate(yyyymmdd) {
    if (!/^\d{8}$/.test(yyyymmdd || '')) return yyyymmdd || '';
    return yyyymmdd.slice(6, 8) + '/' + yyyymmdd.slice(4, 6) + '/' + yyyymmdd.slice(0, 4);
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  function row(label, value) {
    if (!value) return null;
    return el('div', { class: 'drimbox-row' }, [
      el('dt', { text: label }),
      el('dd', { text: value }),
    ]);
  }

  function identityRows(study) {
    var ins = study.ins
      ? study.ins + (study.ins_oid ? ' (' + (INS_OIDS[study.ins_oid] || 'OID ' + study.ins_oid) + ')' : '')
      : '';
    return [
      row('Nom de naissance', study.birth_name),
      row('Prénom(s) de naissance', (study.given_names || []).join(' ')),
      row('Sexe', SEX[study.sex] || study.sex),
      row('Date de naissance', frenchDate(study.birth_date)),
      row('Lieu de naissance (code INSEE)', study.birthplace),
      row('Matricule INS', ins),
      row('Établissement', study.institution),
      row('N° d\'examen', study.accession_number),
    ];
  }

  function style() {
    var css =
      '#drimbox-identity{position:fixed;inset:0;z-index:10000;background:rgba(0,0,0,.55);' +
      'display:flex;align-items:center;justify-content:center;font-family:system-ui,sans-serif}' +
      '#drimbox-identity[hidden]{display:none}' +
      '#drimbox-identity .drimbox-card{background:#14203a;color:#e6edf7;border-radius:12px;' +
      'padding:1.5rem 1.8rem;max-width:34rem;box-shadow:0 8px 30px rgba(0,0,0,.5)}' +
      '#drimbox-identity h2{margin:0 0 .3rem;font-size:1.2rem}' +
      '#drimbox-identity p{margin:.2rem 0 1rem;color:#9fb3d1;font-size:.9rem}' +
      '#drimbox-identity dl{margin:0 0 1rem}' +
      '#drimbox-identity .drimbox-exam{margin:.6rem 0 .2rem;font-size:1rem;color:#c7d6ee}' +
      '#drimbox-identity .drimbox-card{max-height:90vh;overflow:auto}' +
      '.drimbox-row{display:grid;grid-template-columns:13rem 1fr;gap:.6rem;padding:.25rem 0;' +
      'border-bottom:1px solid #22345a}' +
      '.drimbox-row dt{color:#9fb3d1}.drimbox-row dd{margin:0;font-weight:600}' +
      '#drimbox-identity button,#drimbox-badge{font:inherit;border-radius:8px;cursor:pointer}' +
      '#drimbox-identity .drimbox-actions{display:flex;gap:.6rem;justify-content:flex-end}' +
      '#drimbox-identity .drimbox-ok{background:#1d4ed8;color:#fff;border:0;padding:.5rem 1rem}' +
      '#drimbox-identity .drimbox-logout{background:transparent;color:#e6edf7;' +
      'border:1px solid #3b5b95;padding:.5rem 1rem}' +
      '#drimbox-badge{position:fixed;left:8px;bottom:8px;z-index:9999;background:#14203a;' +
      'color:#e6edf7;border:1px solid #3b5b95;padding:.35rem .7rem;font-size:.85rem;' +
      'font-family:system-ui,sans-serif}' +
      '.drimbox-download{display:inline-block;font:inherit;border-radius:8px;cursor:pointer;' +
      'text-decoration:none;background:#0f766e;color:#fff;border:0;padding:.5rem 1rem}' +
      '#drimbox-download-fixed{position:fixed;left:8px;bottom:44px;z-index:9999;' +
      'padding:.35rem .7rem;font-size:.85rem;font-family:system-ui,sans-serif}' +
      '#drimbox-identity .drimbox-hint{font-size:.8rem;margin:.2rem 0 .8rem}';
    document.head.appendChild(el('style', { text: css }));
  }

  // The exams this page shows (its URL), in the URL's order; the first granted one if the
  // URL names none of them. Two exams side by side: one identity block each (DB.VI-CS.29,
  // .35): the identity shown is always that of the images on screen.
  function shownStudies(info) {
    var granted = info.studies || [];
    var shown = drimboxStudiesInUrl()
      .map(function (uid) { return granted.filter(function (s) { return s.study_uid === uid; })[0]; })
      .filter(function (s) { return s; });
    return shown.length ? shown : granted.slice(0, 1);
  }

  function identityList(studies) {
    if (studies.length === 1) {
      return el('dl', { class: 'drimbox-identities' }, identityRows(studies[0]));
    }
    var blocks = [];
    studies.forEach(function (study, index) {
      blocks.push(el('h3', {
        class: 'drimbox-exam',
        text: 'Examen ' + (index + 1) + (study.accession_number ? ' (n° ' + study.accession_number + ')' : ''),
      }));
      blocks.push(el('dl', {}, identityRows(study)));
    });
    return el('div', { class: 'drimbox-identities' }, blocks);
  }

  function build(info) {
    var studies = shownStudies(info);
    var study = studies[0];
    if (!study) return;
    style();
    var logout = el('form', { method: 'post', action: '/auth/logout' }, [
      el('input', { type: 'hidden', name: 'csrf', value: info.csrf || '' }),
      el('button', { type: 'submit', class: 'drimbox-logout', text: 'Se déconnecter' }),
    ]);
    var ok = el('button', { type: 'button', class: 'drimbox-ok', text: 'Voir les images' });
    var connected = info.user ? 'Connecté : ' + info.user : '';
    var dialog = el(
      'div',
      { id: 'drimbox-identity', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'drimbox-identity-title' },
      [
        el('div', { class: 'drimbox-card' }, [
          el('h2', { id: 'drimbox-identity-title', text: 'Identité du patient' }),
          el('p', { text: 'Selon le document de référence de l\'examen (KOS). ' + connected }),
          identityList(studies),
          el('div', { class: 'drimbox-actions' }, [logout, ok]),
        ]),
      ]
    );
    var badge = el('button', {
      id: 'drimbox-badge',
      type: 'button',
      title: 'Identité du patient',
      text: 'Patient : ' + [study.birth_name, (study.given_names || []).join(' ')].join(' ').trim(),
    });
    ok.addEventListener('click', function () { dialog.hidden = true; badge.focus(); });
    badge.addEventListener('click', function () { dialog.hidden = false; ok.focus(); });
    document.body.appendChild(dialog);
    document.body.appendChild(badge);
    ok.focus();
    addDownloads(info.studies || [], dialog.querySelector('.drimbox-actions'),
      dialog.querySelector('.drimbox-identities'));
  }

  // --- Study download (DB.VI-SO.176) ------------------------------------------------------
  // One link per granted study to /api/download/<study>: a ZIP (IHE PDI, DICOMDIR) the
  // browser saves with its own progress. A HEAD request first: the button only appears
  // for studies the BFF can offer here (not, for now, one opened from a remote Source).
  var DOWNLOAD_HINT = 'Archive ZIP au format DICOM (avec DICOMDIR, pour clé USB), images ' +
    'sans perte. Sa taille n\'est pas connue à l\'avance : la progression s\'affiche ' +
    'dans les téléchargements du navigateur. Un examen de plusieurs centaines d\'images ' +
    'peut peser plusieurs centaines de mégaoctets.';

  function downloadLink(study, id, several) {
    var label = 'Télécharger l\'examen' + (several && study.accession_number
      ? ' ' + study.accession_number : '');
    var attrs = {
      class: 'drimbox-download',
      href: '/api/download/' + encodeURIComponent(study.study_uid),
      download: '',
      title: DOWNLOAD_HINT,
      'data-study': study.study_uid,
      text: label,
    };
    if (id) attrs.id = id;
    return el('a', attrs);
  }

  function addDownloads(studies, actions, list) {
    var several = studies.length > 1;
    studies.forEach(function (study, index) {
      fetch('/api/download/' + encodeURIComponent(study.study_uid),
        { method: 'HEAD', credentials: 'same-origin' })
        .then(function (r) {
          if (!r.ok) return;
          if (actions) actions.insertBefore(downloadLink(study, null, several), actions.firstChild);
          if (index === 0) {
            if (list) list.parentNode.insertBefore(
              el('p', { class: 'drimbox-hint', text: DOWNLOAD_HINT }), list.nextSibling);
            var fixed = downloadLink(study, 'drimbox-download-fixed', several);
            document.body.appendChild(fixed);
          }
        })
        .catch(function () { /* no download button: the viewer still works */ });
    });
  }

  // --- Download progress (DB.VI-CS.18) and retrieval errors (DB.VI-CO.27) -------------
  // Polls /api/progress while images load: one line per series, images received out of
  // the total; errors stay, in French with their code, until the user closes them.
  var progressBox = null;
  var sessionInfo = null;

  function progressStyle() {
    var css =
      '#drimbox-progress{position:fixed;right:12px;bottom:12px;z-index:9998;width:22rem;' +
      'background:#14203a;color:#e6edf7;border:1px solid #3b5b95;border-radius:10px;' +
      'padding:.6rem .8rem;font:13px system-ui,sans-serif;box-shadow:0 4px 18px rgba(0,0,0,.4)}' +
      '#drimbox-progress h3{margin:0 0 .4rem;font-size:.9rem}' +
      '#drimbox-progress .drimbox-series{margin:.25rem 0}' +
      '#drimbox-progress .drimbox-bar{height:5px;background:#22345a;border-radius:3px}' +
      '#drimbox-progress .drimbox-bar span{display:block;height:5px;background:#3b82f6;' +
      'border-radius:3px}' +
      '#drimbox-progress .drimbox-error{color:#fecaca;background:#450a0a;border-radius:6px;' +
      'padding:.35rem .5rem;margin:.3rem 0}' +
      '#drimbox-progress button{float:right;background:none;border:0;color:#9fb3d1;' +
      'cursor:pointer;font-size:1rem}';
    document.head.appendChild(el('style', { text: css }));
  }

  function renderProgress(series) {
    if (!progressBox) {
      progressStyle();
      progressBox = el('section', { id: 'drimbox-progress', role: 'status', 'aria-live': 'polite' });
      document.body.appendChild(progressBox);
    }
    while (progressBox.firstChild) progressBox.removeChild(progressBox.firstChild);
    var close = el('button', { type: 'button', title: 'Fermer', text: '×' });
    close.addEventListener('click', function () { progressBox.hidden = true; });
    progressBox.appendChild(close);
    progressBox.appendChild(el('h3', { text: 'Téléchargement des images' }));
    series.forEach(function (s, index) {
      var name = s.description || 'Série ' + (index + 1);
      if (s.error) {
        progressBox.appendChild(el('div', { class: 'drimbox-error', role: 'alert',
          text: name + ' — ' + s.error.code + ' : ' + s.error.message }));
        return;
      }
      var total = s.total || 0;
      var label = name + ' : ' + s.received + (total ? ' / ' + total : '') + ' images' +
        (s.complete ? ' — terminé' : '');
      var pct = total ? Math.min(100, Math.round((100 * s.received) / total)) : 0;
      progressBox.appendChild(el('div', { class: 'drimbox-series', 'data-series': s.series_uid }, [
        el('div', { text: label }),
        el('div', { class: 'drimbox-bar' }, [el('span', { style: 'width:' + pct + '%' })]),
      ]));
    });
  }

  // --- Non-diagnostic mention (DB.VI-CS.26) ----------------------------------------------
  // Always visible while images are shown, unless the deployment is a medical device AND
  // every image shown is lossless. The Source serves lossy frames: there it is always on.
  var mention = null;
  var MENTION_TEXT =
    'Images compressées avec perte : affichage non destiné au diagnostic.';

  function updateMention(info, series) {
    var lossy = (series || []).some(function (s) { return s.lossy; });
    var show = !info.medical_device || lossy || !(series || []).length;
    if (show && !mention) {
      mention = el('div', { id: 'drimbox-mention', role: 'note', text: MENTION_TEXT });
      mention.setAttribute(
        'style',
        'position:fixed;top:52px;left:50%;transform:translateX(-50%);z-index:9997;' +
          'background:rgba(120,53,15,.92);color:#fff7ed;font:12px system-ui,sans-serif;' +
          'padding:.2rem .7rem;border-radius:0 0 6px 6px;pointer-events:none'
      );
      document.body.appendChild(mention);
    }
    if (mention) mention.hidden = !show;
  }

  function pollProgress(startedAt) {
    fetch('/api/progress', { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        var series = (data && data.series) || [];
        updateMention(sessionInfo || {}, series);
        if (series.length) renderProgress(series);
        var pending = series.some(function (s) { return !s.complete && !s.error; });
        var failed = series.some(function (s) { return s.error; });
        if (series.length && !pending && !failed && progressBox) {
          setTimeout(function () { progressBox.hidden = true; }, 1500);
          return;
        }
        if ((pending || !series.length) && Date.now() - startedAt < 30 * 60 * 1000) {
          setTimeout(function () { pollProgress(startedAt); }, 700);
        }
      })
      .catch(function () { setTimeout(function () { pollProgress(startedAt); }, 2000); });
  }

  function start() {
    fetch('/api/session', { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (info) {
        if (info) {
          sessionInfo = info;
          build(info);
          updateMention(info, []);
          pollProgress(Date.now());
        }
      })
      .catch(function () { /* no session panel: the viewer still works */ });
  }

  // --- Objects the viewer cannot show (DB.VI-CS.30, issue 6) ------------------------------
  // Stock OHIF 3.13.2 makes an 'unsupported' display set (ds.unsupported, no viewport, an
  // English tooltip) for a SOP class none of its handlers takes (raw data, registrations,
  // presentation states...). We list those in French rather than leave them silently
  // blank, and also images in a transfer syntax the BFF does not serve (frames would
  // fail). OHIF's own verdict is read from window.services.displaySetService (set by the
  // cornerstone extension at start-up); works with or without a session.
  var UNSUPPORTED_NAMES = [
    ['1.2.840.10008.5.1.4.1.1.66.1', 'Recalage spatial'],
    ['1.2.840.10008.5.1.4.1.1.66.2', 'Repères (fiducials)'],
    ['1.2.840.10008.5.1.4.1.1.66.3', 'Recalage déformable'],
    ['1.2.840.10008.5.1.4.1.1.66.5', 'Segmentation surfacique'],
    ['1.2.840.10008.5.1.4.1.1.66', 'Données brutes'],
    ['1.2.840.10008.5.1.4.1.1.11.', 'État de présentation'],
    ['1.2.840.10008.5.1.4.1.1.88.', 'Rapport structuré'],
    ['1.2.840.10008.5.1.4.1.1.9.', 'Tracé (forme d\'onde)'],
    ['1.2.840.10008.5.1.4.1.1.104.', 'Document encapsulé'],
    ['1.2.840.10008.5.1.4.1.1.481.', 'Objet de radiothérapie'],
  ];
  // What the BFF serves (docs/transcoding.md): any other syntax in the metadata means the
  // BFF could not transcode the instance.
  var SERVED_SYNTAXES =
    /^1\.2\.840\.10008\.1\.2\.(1|5|4\.(50|51|57|70|80|81|90|91|201|202|203|10[0-8]))$/;
  var unsupportedBox = null;

  function unsupportedName(sopClassUid, modality) {
    for (var i = 0; i < UNSUPPORTED_NAMES.length; i++) {
      var prefix = UNSUPPORTED_NAMES[i][0];
      if (sopClassUid === prefix || (prefix.slice(-1) === '.' && sopClassUid.indexOf(prefix) === 0)) {
        return UNSUPPORTED_NAMES[i][1];
      }
    }
    return 'objet DICOM' + (modality ? ' ' + modality : '');
  }

  function unsupportedLines(displaySets) {
    var lines = [];
    (displaySets || []).forEach(function (ds) {
      var instance = ds.instance || (ds.instances || [])[0] || {};
      var label = ds.SeriesDescription || ('Série ' + (ds.SeriesNumber || ''));
      if (ds.unsupported) {
        lines.push({ uid: ds.displaySetInstanceUID, series: label,
          text: 'Cet objet (' + unsupportedName(String(ds.SOPClassUID || instance.SOPClassUID || ''),
            ds.Modality) + ') ne peut pas être affiché dans la visionneuse.' });
        return;
      }
      var syntax = instance.TransferSyntaxUID;
      if (syntax && instance.Rows && !SERVED_SYNTAXES.test(String(syntax))) {
        lines.push({ uid: ds.displaySetInstanceUID, series: label,
          text: 'Cette image (syntaxe de transfert ' + syntax + ') ne peut pas être affichée ' +
            'dans la visionneuse.' });
      }
    });
    return lines;
  }

  function renderUnsupported(lines) {
    if (!lines.length) {
      if (unsupportedBox) unsupportedBox.hidden = true;
      return;
    }
    if (!unsupportedBox) {
      unsupportedBox = el('section', { id: 'drimbox-unsupported', role: 'status',
        'aria-live': 'polite' });
      unsupportedBox.setAttribute('style',
        'position:fixed;top:56px;right:56px;z-index:9996;max-width:26rem;background:#14203a;' +
        'color:#e6edf7;border:1px solid #b45309;border-radius:10px;padding:.6rem .8rem;' +
        'font:13px system-ui,sans-serif;box-shadow:0 4px 18px rgba(0,0,0,.4)');
      document.body.appendChild(unsupportedBox);
    }
    while (unsupportedBox.firstChild) unsupportedBox.removeChild(unsupportedBox.firstChild);
    var close = el('button', { type: 'button', title: 'Fermer', text: '×' });
    close.setAttribute('style', 'float:right;background:none;border:0;color:#9fb3d1;' +
      'cursor:pointer;font-size:1rem');
    close.addEventListener('click', function () { unsupportedBox.hidden = true; });
    unsupportedBox.appendChild(close);
    unsupportedBox.appendChild(el('h3', { text: 'Objets non affichables',
      style: 'margin:0 0 .4rem;font-size:.9rem' }));
    lines.forEach(function (line) {
      unsupportedBox.appendChild(el('p', { class: 'drimbox-unsupported-item',
        'data-display-set': line.uid, style: 'margin:.25rem 0',
        text: line.series + ' : ' + line.text }));
    });
    unsupportedBox.hidden = false;
  }

  function watchUnsupported(startedAt) {
    var services = window.services;
    var displaySets = services && services.displaySetService;
    if (!displaySets || !displaySets.subscribe) {
      if (Date.now() - startedAt < 120000) {
        setTimeout(function () { watchUnsupported(startedAt); }, 500);
      }
      return;
    }
    var seen = '';
    function update() {
      var lines = unsupportedLines(displaySets.getActiveDisplaySets());
      var key = lines.map(function (l) { return l.uid; }).join(',');
      if (key !== seen) {
        seen = key;
        renderUnsupported(lines);
      }
    }
    var events = displaySets.EVENTS || {};
    [events.DISPLAY_SETS_ADDED, events.DISPLAY_SETS_CHANGED, events.DISPLAY_SETS_REMOVED]
      .forEach(function (name) { if (name) displaySets.subscribe(name, update); });
    update();
  }
  // -------------------------------------------------------------------------------------

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
  watchUnsupported(Date.now());
})();

// --- Viewer tools (issue 6, display conformance: tools) ----------------------------------
// Three controls around OHIF, in French, each one or two clicks away, none touching OHIF's
// code (only cornerstone's public API, window.cornerstone, and same-origin URLs):
// - MIP / MinIP with a slab thickness in mm (DB.VI-CS.23): stock OHIF 3.13.2 has no control
//   for the blend mode (only the crosshairs' slab handles, MIP only); shown while volume
//   (MPR) viewports are on screen, it sets cornerstone's blend mode and slab thickness on
//   each of them;
// - "Fusion TEP-TDM" (DB.VI-CS.24, .117): a link to OHIF's /tmtv mode when the study holds
//   PT and CT series (OHIF offers its modes only from the study list, which is off here),
//   and "Retour à la visionneuse" from there;
// - "Comparer les deux examens" (DB.VI-CS.35, .36): when the session is granted two exams,
//   both side by side in one tab (OHIF's hanging protocol @ohif/hpCompare).
(function () {
  'use strict';

  var BLEND_MODES = {
    normal: 'COMPOSITE',
    mip: 'MAXIMUM_INTENSITY_BLEND',
    minip: 'MINIMUM_INTENSITY_BLEND',
  };
  var DEFAULT_THICKNESS_MM = 10;
  var box = null;
  var projection = null;
  var seenHref = '';

  function node(tag, attrs, children) {
    var element = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') element.textContent = attrs[k];
      else element.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) element.appendChild(c); });
    return element;
  }

  function toolsBox() {
    if (box) return box;
    var css =
      '#drimbox-tools{position:fixed;left:8px;bottom:84px;z-index:9996;display:flex;' +
      'flex-direction:column;gap:.4rem;align-items:flex-start;font:13px system-ui,sans-serif}' +
      '#drimbox-tools a,#drimbox-tools form{background:#14203a;color:#e6edf7;' +
      'border:1px solid #3b5b95;border-radius:8px;padding:.35rem .7rem;text-decoration:none}' +
      '#drimbox-tools form{display:flex;gap:.4rem;align-items:center}' +
      '#drimbox-tools select,#drimbox-tools input{font:inherit;background:#0b1426;' +
      'color:#e6edf7;border:1px solid #3b5b95;border-radius:6px;padding:.1rem .3rem}' +
      '#drimbox-tools input{width:4.5rem}';
    document.head.appendChild(node('style', { text: css }));
    box = node('div', { id: 'drimbox-tools' });
    document.body.appendChild(box);
    return box;
  }

  // --- MIP / MinIP (DB.VI-CS.23) ---
  function volumeViewports() {
    var cs = window.cornerstone;
    if (!cs || typeof cs.getEnabledElements !== 'function') return [];
    return cs.getEnabledElements()
      .map(function (element) { return element.viewport; })
      .filter(function (vp) {
        return vp && vp.type === 'orthographic' && typeof vp.setBlendMode === 'function' &&
          typeof vp.setSlabThickness === 'function';
      });
  }

  function applyProjection(kind, thicknessMm) {
    var cs = window.cornerstone;
    var defaults = (cs.CONSTANTS && cs.CONSTANTS.RENDERING_DEFAULTS) || {};
    var thinnest = defaults.MINIMUM_SLAB_THICKNESS || 0.05;
    var mode = cs.Enums.BlendModes[BLEND_MODES[kind] || BLEND_MODES.normal];
    var thickness = kind === 'normal' ? thinnest : Math.max(thicknessMm, thinnest);
    volumeViewports().forEach(function (vp) {
      vp.setBlendMode(mode);
      vp.setSlabThickness(thickness);
      vp.render();
    });
  }

  function projectionForm() {
    var kind = node('select', { name: 'kind', 'aria-label': 'Type de projection' }, [
      node('option', { value: 'normal', text: 'Coupe fine' }),
      node('option', { value: 'mip', text: 'MIP (intensité maximale)' }),
      node('option', { value: 'minip', text: 'MinIP (intensité minimale)' }),
    ]);
    var thickness = node('input', {
      name: 'thickness', type: 'number', min: '1', max: '1000', step: '1',
      value: String(DEFAULT_THICKNESS_MM), 'aria-label': 'Épaisseur de la tranche en mm',
    });
    var form = node('form', {
      id: 'drimbox-projection', 'aria-label': 'Projection MIP / MinIP',
      title: 'Projection sur une tranche d\'épaisseur choisie (vues MPR)',
    }, [node('span', { text: 'Projection' }), kind, thickness, node('span', { text: 'mm' })]);
    function apply(event) {
      if (event) event.preventDefault();
      var mm = parseFloat(String(thickness.value).replace(',', '.'));
      applyProjection(kind.value, Number.isFinite(mm) && mm > 0 ? mm : DEFAULT_THICKNESS_MM);
    }
    form.addEventListener('submit', apply);
    kind.addEventListener('change', apply);
    thickness.addEventListener('change', apply);
    return form;
  }

  function updateProjection() {
    var show = window.location.pathname === '/viewer' && volumeViewports().length > 0;
    if (show && !projection) {
      projection = projectionForm();
      toolsBox().appendChild(projection);
    }
    if (projection) projection.hidden = !show;
  }

  // --- PET-CT fusion (DB.VI-CS.24, .117) and two exams (DB.VI-CS.35, .36) ---
  function link(id, text, href, title) {
    return node('a', { id: id, href: href, title: title, text: text });
  }

  function addFusionLinks(studies) {
    if (window.location.pathname === '/tmtv' && studies.length === 1) {
      toolsBox().appendChild(link('drimbox-fusion-back', 'Retour à la visionneuse',
        '/viewer?StudyInstanceUIDs=' + encodeURIComponent(studies[0]),
        'Affichage habituel de l\'examen'));
      return;
    }
    if (window.location.pathname !== '/viewer' || studies.length !== 1) return;
    var uid = studies[0];
    fetch('/dicomweb/studies/' + encodeURIComponent(uid) + '/series',
      { credentials: 'same-origin', headers: { Accept: 'application/dicom+json' } })
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (series) {
        var modalities = (series || []).map(function (s) {
          return ((s['00080060'] || {}).Value || [])[0];
        });
        if (modalities.indexOf('PT') < 0 || modalities.indexOf('CT') < 0) return;
        toolsBox().appendChild(link('drimbox-fusion', 'Fusion TEP-TDM',
          '/tmtv?StudyInstanceUIDs=' + encodeURIComponent(uid),
          'TEP et scanner superposés, valeurs SUV'));
      })
      .catch(function () { /* no fusion link: the viewer still works */ });
  }

  function addCompareLink(studies) {
    if (window.location.pathname !== '/viewer' || studies.length !== 1) return;
    fetch('/api/session', { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (info) {
        var granted = ((info && info.studies) || []).map(function (s) { return s.study_uid; });
        var others = granted.filter(function (uid) { return uid !== studies[0]; });
        if (granted.indexOf(studies[0]) < 0 || !others.length) return;
        // The exam on screen first, then the last other exam opened.
        var pair = [studies[0], others[others.length - 1]];
        toolsBox().appendChild(link('drimbox-compare', 'Comparer les deux examens',
          '/viewer?StudyInstanceUIDs=' + pair.map(encodeURIComponent).join(',') +
            '&hangingProtocolId=' + encodeURIComponent('@ohif/hpCompare'),
          'Les deux examens côte à côte dans cet onglet'));
      })
      .catch(function () { /* no compare link: the viewer still works */ });
  }

  function onPage() {
    // OHIF changes the URL without reloading: links follow the study shown.
    if (window.location.href !== seenHref) {
      seenHref = window.location.href;
      ['drimbox-fusion', 'drimbox-fusion-back', 'drimbox-compare'].forEach(function (id) {
        var old = document.getElementById(id);
        if (old) old.parentNode.removeChild(old);
      });
      var studies = drimboxStudiesInUrl();
      addFusionLinks(studies);
      addCompareLink(studies);
    }
    updateProjection();
  }

  function startTools() {
    onPage();
    setInterval(onPage, 1000);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', startTools);
  else startTools();
})();

// --- The series to display first (issue 6: DB.VI-SO.189) ---------------------------------
// When the exam has several series, the identity dialog shown at opening also offers
// "Choisir la série à afficher en premier": one button per series (number, description,
// modality, images), from the facade's own series search (the series of the exam the
// report names, as granted from its KOS; for the Consumer, the series of the KOS itself).
// A choice tells the BFF to retrieve that series first (POST /api/priority/<study>/<series>,
// same access check as the images) and reopens the viewer with OHIF's
// initialSeriesInstanceUID, which shows it first and asks its images first. The identity
// dialog is then not shown a second time for that reopening (the user just saw it).
(function () {
  'use strict';

  var CHOSEN_KEY = 'drimbox-series-chosen';
  var started = Date.now();

  function node(tag, attrs, text) {
    var element = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { element.setAttribute(k, attrs[k]); });
    if (text) element.textContent = text;
    return element;
  }

  function value(row, tag) {
    return ((row[tag] || {}).Value || [])[0];
  }

  function seriesLabel(row) {
    var number = value(row, '00200011');
    var description = value(row, '0008103E');
    var modality = value(row, '00080060');
    var count = value(row, '00201209');
    var details = [modality, count ? count + (Number(count) > 1 ? ' images' : ' image') : '']
      .filter(function (d) { return d; }).join(', ');
    return 'Série ' + (number === undefined || number === null ? '?' : number) +
      (description ? ' — ' + description : '') + (details ? ' (' + details + ')' : '');
  }

  function byNumber(a, b) {
    var na = Number(value(a, '00200011'));
    var nb = Number(value(b, '00200011'));
    if (!Number.isFinite(na)) na = Infinity;
    if (!Number.isFinite(nb)) nb = Infinity;
    return na - nb;
  }

  function choose(studyUid, seriesUid, csrf) {
    var url = '/viewer?StudyInstanceUIDs=' + encodeURIComponent(studyUid) +
      '&initialSeriesInstanceUID=' + encodeURIComponent(seriesUid);
    var gone = false;
    function go() {
      if (gone) return;
      gone = true;
      window.location.assign(url);
    }
    try { window.sessionStorage.setItem(CHOSEN_KEY, studyUid + '|' + seriesUid); } catch (e) { /* private mode */ }
    fetch('/api/priority/' + encodeURIComponent(studyUid) + '/' + encodeURIComponent(seriesUid), {
      method: 'POST', credentials: 'same-origin', keepalive: true,
      headers: { 'X-CSRF-Token': csrf || '' },
    }).then(go, go);
    setTimeout(go, 1500); // the choice never waits on the BFF for long
  }

  function addChoice(dialog, studyUid, current) {
    var card = dialog.querySelector('.drimbox-card');
    var actions = dialog.querySelector('.drimbox-actions');
    var csrfInput = dialog.querySelector('input[name=csrf]');
    if (!card || !actions) return;
    fetch('/dicomweb/studies/' + encodeURIComponent(studyUid) + '/series',
      { credentials: 'same-origin', headers: { Accept: 'application/dicom+json' } })
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (rows) {
        rows = (rows || []).filter(function (row) { return value(row, '0020000E'); });
        if (rows.length < 2) return;
        rows.sort(byNumber);
        var section = node('section', { id: 'drimbox-series-choice',
          'aria-labelledby': 'drimbox-series-choice-title' });
        section.setAttribute('style', 'margin:0 0 1rem');
        var title = node('h3', { id: 'drimbox-series-choice-title' },
          'Choisir la série à afficher en premier');
        title.setAttribute('style', 'margin:.2rem 0 .4rem;font-size:1rem');
        var list = node('ul', {});
        list.setAttribute('style', 'list-style:none;margin:0;padding:0;max-height:12rem;' +
          'overflow:auto;display:flex;flex-direction:column;gap:.3rem');
        rows.forEach(function (row) {
          var seriesUid = value(row, '0020000E');
          var label = seriesLabel(row) + (seriesUid === current ? ' — affichée' : '');
          var button = node('button', { type: 'button', class: 'drimbox-series-choice',
            'data-series-uid': seriesUid }, label);
          if (seriesUid === current) button.setAttribute('aria-current', 'true');
          button.setAttribute('style', 'width:100%;text-align:left;background:#0b1426;' +
            'color:#e6edf7;border:1px solid #3b5b95;border-radius:8px;padding:.4rem .7rem;' +
            'font:inherit;cursor:pointer');
          button.addEventListener('click', function () {
            choose(studyUid, seriesUid, csrfInput ? csrfInput.value : '');
          });
          list.appendChild(node('li', {})).appendChild(button);
        });
        section.appendChild(title);
        section.appendChild(list);
        card.insertBefore(section, actions);
      })
      .catch(function () { /* no choice offered: the viewer shows its first series */ });
  }

  function watch() {
    var dialog = document.getElementById('drimbox-identity');
    if (!dialog) {
      if (Date.now() - started < 60000) setTimeout(watch, 200);
      return;
    }
    var params = new URLSearchParams(window.location.search);
    var studies = (params.get('StudyInstanceUIDs') || '').split(',').filter(function (u) { return u; });
    if (window.location.pathname !== '/viewer' || studies.length !== 1) return;
    var current = params.get('initialSeriesInstanceUID') || '';
    var chosen = null;
    try {
      chosen = window.sessionStorage.getItem(CHOSEN_KEY);
      window.sessionStorage.removeItem(CHOSEN_KEY);
    } catch (e) { /* private mode */ }
    if (current && chosen === studies[0] + '|' + current) dialog.hidden = true;
    addChoice(dialog, studies[0], current);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', watch);
  else watch();
})();
