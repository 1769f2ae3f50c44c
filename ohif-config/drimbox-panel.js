// drimbox-viewer: what the BFF shows around the stock OHIF viewer (never inside it).
// Loaded by app-config.js. Reads /api/session (same origin, HttpOnly cookie; no token is
// ever exposed to this script) and shows, on opening, the patient's INS identity traits
// and the institution taken from the exam's KOS (DB.VI-CS.29), reachable again at any
// time from a button, and a "Télécharger l'examen" button (ZIP, DB.VI-SO.176). All text
// goes through textContent: nothing is parsed as HTML.
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

  function build(info) {
    var study = (info.studies || [])[0];
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
          el('dl', {}, identityRows(study)),
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
      dialog.querySelector('dl'));
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

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
