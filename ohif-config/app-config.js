/** @type {AppTypes.Config} */
// drimbox-viewer: configuration of the STOCK OHIF 3.13.2 build (npm @ohif/app, never
// rebuilt). Served by the BFF at /app-config.js with Cache-Control: no-cache; index.html
// loads it as a classic synchronous script BEFORE the deferred app bundle, so what runs
// here runs before OHIF's i18n and services start.
//
// Option names were checked against the shipped dist (ohif-dist/app.bundle.*.js and
// 89.bundle.*.js); see the notes next to each option.
(function () {
  'use strict';

  // --- French by default ---------------------------------------------------------------
  // OHIF's i18next-browser-languagedetector runs at app-bundle load with
  //   order: querystring (?lng=), cookie 'i18next', localStorage 'i18nextLng', navigator...
  //   caches: localStorage + cookie
  // and DEFAULT_LANGUAGE = 'en-US' is hard-coded (no config option for a default language).
  // So: when the user has never chosen a language (no 'i18nextLng' in localStorage and no
  // 'i18next' cookie), store 'fr' where the detector looks. ?lng=xx and an explicit choice
  // in OHIF's preferences still win.
  var LANGUAGE = 'fr';
  try {
    var hasCookie = /(?:^|;\s*)i18next=/.test(document.cookie);
    if (!hasCookie && !window.localStorage.getItem('i18nextLng')) {
      window.localStorage.setItem('i18nextLng', LANGUAGE);
    }
  } catch (e) {
    // localStorage unavailable (privacy mode): fall back to the detector's cookie.
    if (!/(?:^|;\s*)i18next=/.test(document.cookie)) {
      document.cookie = 'i18next=' + LANGUAGE + '; path=/; SameSite=Strict';
    }
  }

  // What the BFF shows around OHIF (identity from the KOS on opening, DB.VI-CS.29...):
  // ES modules of our own (ohif-config/panel/, served at /drimbox/panel/), never touching
  // OHIF's own code. The entry module imports the others and waits for the page's body;
  // everything comes from 'self' (no inline script, no eval).
  var panel = document.createElement('script');
  panel.type = 'module';
  panel.src = '/drimbox/panel/main.js';
  document.head.appendChild(panel);

  // OHIF's HTTP errors (see httpErrorHandler below) go to the page around OHIF: queued
  // here until panel/http-errors.js starts, which then puts its handler in their place.
  var HTTP_ERROR_SINK = 'DRIMBOX_HTTP_ERRORS';
  var MAX_QUEUED_ERRORS = 50;
  window[HTTP_ERROR_SINK] = [];
  function httpErrorHandler(error) {
    var sink = window[HTTP_ERROR_SINK];
    if (typeof sink === 'function') {
      sink(error);
    } else if (Array.isArray(sink) && sink.length < MAX_QUEUED_ERRORS) {
      sink.push(error);
    }
  }

  // Re-skinning for editors (issue 6, item 9): product name, logo and accent colour of the
  // header and of the BFF's panels around OHIF. logoUrl: any same-origin or data: URL,
  // e.g. '/drimbox/logo.svg' placed in ohif-config/ (served by the BFF) or a data: URI.
  var BRANDING = {
    productName: 'Visionneuse DRIMbox',
    logoUrl: '',
    accentColor: '#5acce6',
  };
  window.DRIMBOX_BRANDING = BRANDING;

  // Same-origin DICOMweb facade of the BFF (cookies are sent with no extra config).
  var DICOMWEB_ROOT = window.location.origin + '/dicomweb';

  // Does the viewer URL name the series to show first (OHIF's initialSeriesInstanceUID,
  // read case-insensitively by OHIF)? Read once, before OHIF boots.
  var NAMES_SERIES = /[?&]initialseriesinstanceuid=[^&]/i.test(window.location.search);

  // Frames are asked for as the BFF serves them: JPEG-LS near-lossless (4.81) for grey
  // images, lossy HTJ2K (4.203) for the others, anything else as received. OHIF uses this array
  // verbatim as the Accept header of every /frames/N request (XHR and streaming fetch):
  // generateAcceptHeader() returns a non-empty configured acceptHeader unchanged, and
  // requestTransferSyntaxUID cannot express HTJ2K (its typeForTS table stops at 4.93).
  // Written unquoted, matching omitQuotationForMultipartRequest (which only affects the
  // generated header).
  var FRAME_ACCEPT_ANY = 'multipart/related; type=application/octet-stream; transfer-syntax=*';
  var FRAME_ACCEPT =
    'multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.81';
  var FRAME_ACCEPT_HTJ2K =
    'multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.203';

  // --- Viewport overlay: Tableau 3 of DB.VI-CS.29, in French -------------------------------
  // Checked in the shipped 3.13.2 dist: the cornerstone extension's
  // CustomizableViewportOverlay (2623.bundle.*.js) reads the customizations
  // 'viewportOverlay.topLeft' | '.topRight' | '.bottomLeft' | '.bottomRight' (arrays of
  // items). An item with inheritsFrom 'ohif.overlayItem' is drawn by its OverlayItem as
  // <div class="overlay-item" title=...> showing contentF(props, item) (nothing when it
  // returns null or ''); props hold referenceInstance (the display set's instance),
  // instances, voi {windowWidth, windowCenter}, viewportData, imageSliceData {imageIndex,
  // numberOfSlices}, viewportId and servicesManager. A global customization (this
  // config) wins over the mode's and the extension's defaults (89.bundle.*.js,
  // viewportOverlayCustomization, which these arrays replace).
  //
  // The displayed slice's instance comes from cornerstone's own viewport:
  // getCurrentImageId() is the stack's current image, and in a volume (MPR) viewport the
  // acquired slice only when the view is the acquisition plane and lies on a slice
  // (getClosestImageId), else undefined: in reformatted views, whatever belongs to one
  // acquired slice (instance number, position, acquisition/content time) is then hidden
  // rather than shown wrong. window.cornerstone is set by the cornerstone extension, and
  // its metaData 'instance' query returns OHIF's naturalized instance.
  function present(value) {
    if (Array.isArray(value)) {
      return value.length > 0 && present(value[0]);
    }
    return value !== undefined && value !== null && value !== '' && !Number.isNaN(value);
  }
  function first(value) {
    return Array.isArray(value) ? value[0] : value;
  }
  function frNumber(value) {
    var n = Number(value);
    if (!Number.isFinite(n)) {
      return String(value);
    }
    return String(Math.round(n * 100) / 100).replace('.', ',');
  }
  // DICOM DA 'YYYYMMDD' -> 'JJ/MM/AAAA'; TM 'HHMMSS.ffffff' -> 'HH:MM:SS'.
  function frDate(da) {
    var digits = String(da).replace(/[^0-9]/g, '');
    if (digits.length !== 8) {
      return String(da);
    }
    return digits.slice(6, 8) + '/' + digits.slice(4, 6) + '/' + digits.slice(0, 4);
  }
  function frTime(tm) {
    var digits = String(tm).split('.')[0].replace(/[^0-9]/g, '');
    if (!digits) {
      return '';
    }
    digits = (digits + '000000').slice(0, 6);
    return digits.slice(0, 2) + ':' + digits.slice(2, 4) + ':' + digits.slice(4, 6);
  }
  function frDateTime(date, time) {
    var text = frDate(date);
    var clock = present(time) ? frTime(first(time)) : '';
    return clock ? text + ' ' + clock : text;
  }
  // The acquired slice shown in this viewport, or null (reformatted plane, not ready).
  function sliceInstance(props) {
    var services = props.servicesManager && props.servicesManager.services;
    var viewports = services && services.cornerstoneViewportService;
    var viewport = viewports && viewports.getCornerstoneViewport(props.viewportId);
    var imageId = viewport && viewport.getCurrentImageId ? viewport.getCurrentImageId() : null;
    if (imageId && window.cornerstone) {
      return window.cornerstone.metaData.get('instance', imageId) || null;
    }
    var data = props.viewportData;
    var shape = data && (data.dataShapeType || data.viewportType);
    var index = props.imageSliceData && props.imageSliceData.imageIndex;
    // A stack whose viewport is not bound yet: OHIF's own choice of instance.
    if (shape === 'stack' && props.instances && typeof index === 'number') {
      return props.instances[index] || null;
    }
    return null;
  }
  function seriesInstance(props) {
    return props.referenceInstance || sliceInstance(props);
  }
  // Acquisition DateTime, else Acquisition Date+Time, else Content, Series, Study
  // Date+Time (Tableau 3). The first two levels describe one slice.
  function dateTimeText(instance, perSliceAllowed) {
    if (!instance) {
      return null;
    }
    var levels = [];
    if (present(instance.AcquisitionDateTime)) {
      var dt = String(first(instance.AcquisitionDateTime)).replace(/[+-].*$/, '');
      levels.push(['Acquisition', dt.slice(0, 8), dt.slice(8), true]);
    }
    levels.push(
      ['Acquisition', instance.AcquisitionDate, instance.AcquisitionTime, true],
      ['Contenu', instance.ContentDate, instance.ContentTime, true],
      ['Date de la série', instance.SeriesDate, instance.SeriesTime, false],
      ["Date de l'examen", instance.StudyDate, instance.StudyTime, false]
    );
    for (var i = 0; i < levels.length; i++) {
      var level = levels[i];
      if (present(level[1])) {
        if (level[3] && !perSliceAllowed) {
          return null;
        }
        return level[0] + ' : ' + frDateTime(first(level[1]), level[2]);
      }
    }
    return null;
  }
  function overlayItem(id, title, text) {
    return {
      id: id,
      inheritsFrom: 'ohif.overlayItem',
      title: title,
      contentF: function (props) {
        try {
          return text(props) || null;
        } catch (e) {
          return null;
        }
      },
    };
  }
  var OVERLAY = {
    'viewportOverlay.topLeft': [
      // (0008,0080) from the KOS: the BFF writes the KOS's value into the metadata.
      overlayItem('InstitutionName', 'Établissement (0008,0080)', function (props) {
        var instance = seriesInstance(props);
        return instance && present(instance.InstitutionName)
          ? 'Établissement : ' + first(instance.InstitutionName)
          : null;
      }),
      overlayItem('SeriesNumber', 'Numéro de série (0020,0011)', function (props) {
        var instance = seriesInstance(props);
        return instance && present(instance.SeriesNumber)
          ? 'Série : ' + first(instance.SeriesNumber)
          : null;
      }),
      overlayItem('SeriesDescription', 'Description de la série (0008,103E)', function (props) {
        var instance = seriesInstance(props);
        return instance && present(instance.SeriesDescription)
          ? 'Description : ' + first(instance.SeriesDescription)
          : null;
      }),
      // DB.VI-CS.32 (Consumer): the practice's local patient id, which the BFF wrote in
      // place of the Source's PatientID, marked by its private element (0009,1010)
      // "LOCAL" (creator DRIMBOX-VIEWER, bff/dicomweb/series_metadata.py). Unmarked
      // images show no patient id here, as before.
      overlayItem('LocalPatientID', 'Identifiant patient local (0010,0020)', function (props) {
        var instance = seriesInstance(props);
        if (!instance || first(instance['00091010']) !== 'LOCAL' || !present(instance.PatientID)) {
          return null;
        }
        return 'ID patient local : ' + first(instance.PatientID);
      }),
    ],
    'viewportOverlay.topRight': [
      overlayItem('DateTime', "Date et heure d'acquisition", function (props) {
        var slice = sliceInstance(props);
        return slice ? dateTimeText(slice, true) : dateTimeText(props.referenceInstance, false);
      }),
    ],
    'viewportOverlay.bottomLeft': [
      // Window level readout (DB.VI-CS.21).
      overlayItem('WindowLevel', 'Fenêtre : largeur (L) et centre (C)', function (props) {
        var voi = props.voi;
        if (!voi || typeof voi.windowWidth !== 'number' || typeof voi.windowCenter !== 'number') {
          return null;
        }
        return 'Fenêtre : L ' + voi.windowWidth.toFixed(0) + ' C ' + voi.windowCenter.toFixed(0);
      }),
      // OHIF's zoom readout, as in its default (shown while the Zoom tool is active).
      {
        id: 'ZoomLevel',
        inheritsFrom: 'ohif.overlayItem.zoomLevel',
        condition: function (props) {
          return props.toolGroupService.getActiveToolForViewport(props.viewportId) === 'Zoom';
        },
      },
    ],
    'viewportOverlay.bottomRight': [
      overlayItem('InstanceNumber', "Numéro d'image (0020,0013)", function (props) {
        var slice = sliceInstance(props);
        return slice && present(slice.InstanceNumber)
          ? 'Image : ' + first(slice.InstanceNumber)
          : null;
      }),
      // Slice Location, else Table Position (0018,9327), else Image Position (Patient).
      overlayItem('SlicePosition', 'Position de la coupe', function (props) {
        var slice = sliceInstance(props);
        if (!slice) {
          return null;
        }
        if (present(slice.SliceLocation)) {
          return 'Position de coupe : ' + frNumber(first(slice.SliceLocation)) + ' mm';
        }
        var table = present(slice.TablePosition) ? slice.TablePosition : slice['00189327'];
        if (present(table)) {
          return 'Position de table : ' + frNumber(first(table)) + ' mm';
        }
        var ipp = slice.ImagePositionPatient;
        if (Array.isArray(ipp) && ipp.length === 3) {
          return 'Position : ' + ipp.map(frNumber).join(' ; ') + ' mm';
        }
        return null;
      }),
      // Where the viewport is in what it shows (also right in a reformatted view).
      overlayItem('SliceIndex', 'Coupe affichée / nombre de coupes', function (props) {
        var data = props.imageSliceData;
        return data && data.numberOfSlices > 1
          ? 'Coupe : ' + (data.imageIndex + 1) + '/' + data.numberOfSlices
          : null;
      }),
    ],
    // The slice scrollbar (89.bundle.*.js getViewportScrollbarCustomization): keep its
    // loaded-slices fill (the per-slice progress) but without the animated "loading"
    // pattern, which repaints the page at every animation frame while a series loads,
    // and refresh the fill twice a second instead of five times (issue 5: on a 2-core
    // machine every repaint is CPU taken from decoding).
    'viewportScrollbar.showLoadingPattern': false,
    // No onboarding tour: OHIF's default ('ohif.tours', ViewerLayout's Onboarding) walks
    // a first-time visitor through its own tools in English, over a modal overlay that
    // shepherd.js repositions at every animation frame for as long as it is open.
    'ohif.tours': [],
    'viewportScrollbar.loadedBatchIntervalMs': 500,
  };
  // -------------------------------------------------------------------------------------

  // --- Key images (issue 6: DB.VI-SO.196, DB.VI-CO.197; docs/series.md) -----------------
  // The BFF lists a study's key images (SOP Instance UIDs selected by a Key Image Note)
  // at /dicomweb/studies/<study>/key-images, after its usual access check. The list of
  // each study named in the URL is asked for now, while OHIF boots; the overlay item
  // below shows "Image clé" on every slice that is one, in its own series and in the
  // virtual "Images clés" series the BFF offers (which OHIF shows first, DB.VI-SO.170).
  var KEY_IMAGES = {}; // study UID -> {sop UID: true}, or null while asked
  function askKeyImages(studyUid) {
    if (!studyUid || Object.prototype.hasOwnProperty.call(KEY_IMAGES, studyUid)) {
      return;
    }
    KEY_IMAGES[studyUid] = null;
    fetch(DICOMWEB_ROOT + '/studies/' + encodeURIComponent(studyUid) + '/key-images', {
      credentials: 'same-origin',
      headers: { Accept: 'application/json' },
    })
      .then(function (r) {
        return r.ok ? r.json() : { sop_uids: [] };
      })
      .then(function (answer) {
        var set = {};
        (answer.sop_uids || []).forEach(function (uid) {
          set[uid] = true;
        });
        KEY_IMAGES[studyUid] = set;
      })
      .catch(function () {
        delete KEY_IMAGES[studyUid]; // asked again at the next render
      });
  }
  try {
    var urlStudies = new URLSearchParams(window.location.search).get('StudyInstanceUIDs');
    (urlStudies || '').split(',').forEach(askKeyImages);
  } catch (e) {
    // no URLSearchParams: the overlay item asks when it first renders
  }
  OVERLAY['viewportOverlay.topRight'].push(
    overlayItem('KeyImage', 'Image significative (Key Image Note)', function (props) {
      var slice = sliceInstance(props);
      if (!slice || !slice.StudyInstanceUID) {
        return null;
      }
      askKeyImages(slice.StudyInstanceUID);
      var set = KEY_IMAGES[slice.StudyInstanceUID];
      return set && set[slice.SOPInstanceUID] ? 'Image clé' : null;
    })
  );
  // -------------------------------------------------------------------------------------

  window.config = {
    name: 'drimbox-viewer',
    routerBasename: '/',

    // --- Branding (editors: change BRANDING at the top of this file, no code) -----------
    // OHIF reads whiteLabeling.createLogoComponentFn(React) for the header logo.
    whiteLabeling: {
      createLogoComponentFn: function (React) {
        var children = [];
        if (BRANDING.logoUrl) {
          children.push(
            React.createElement('img', {
              key: 'logo',
              src: BRANDING.logoUrl,
              alt: '',
              style: { height: '28px', marginRight: '8px' },
            })
          );
        }
        children.push(
          React.createElement(
            'span',
            { key: 'name', style: { color: BRANDING.accentColor, fontWeight: 600 } },
            BRANDING.productName
          )
        );
        return React.createElement(
          'div',
          { id: 'drimbox-brand', style: { display: 'flex', alignItems: 'center' } },
          children
        );
      },
    },
    // -------------------------------------------------------------------------------------

    // Extensions and modes are compiled into the stock build (as in its default
    // app-config.js, which also leaves these lists empty).
    extensions: [],
    modes: [],
    // Global customizations (legacy object form: id -> value, replacing the default).
    customizationService: OVERLAY,

    // A viewer opens the study named in the URL; there is no worklist.
    showStudyList: false,
    // Decoding workers: OHIF uses min(max(hardwareConcurrency - 1, 1), this), i.e. one
    // worker on a 2-core client, two from 3 cores up; the rest of the CPU stays free for
    // rendering and the main thread.
    maxNumberOfWebWorkers: 2,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    // InvestigationalUseDialog: option 'never' | 'always' | 'configure' (+ days).
    investigationalUseDialog: { option: 'never' },
    maxNumRequests: {
      interaction: 100,
      thumbnail: 5,
      prefetch: 25,
    },
    // StudyPrefetcherService configuration (appConfig.studyPrefetcher): fetch the frames
    // of the displayed series and of the next ones, closest first. When the URL names
    // the series to show (initialSeriesInstanceUID: a Consumer's series-level opening,
    // DB.VI-CS.05, or the series chosen first, DB.VI-SO.189), only that one: the others
    // come when the user displays them (the Consumer then pulls them from the Source).
    // The service (3.13.2 app bundle) prefetches, once the displayed series is loaded,
    // the displaySetsCount closest other display sets; 0 leaves it none.
    studyPrefetcher: {
      enabled: true,
      displaySetsCount: NAMES_SERIES ? 0 : 2,
      maxNumPrefetchRequests: 10,
      order: 'closest', // 'closest' | 'downward' | 'upward'
    },
    // OHIF's own error box (its ErrorBoundary) offers an English "Show Details" button
    // with a stack trace when 'production': kept for development builds only. What
    // failed is said in French with its code by the page around OHIF (DB.VI-SO.28).
    showErrorDetails: 'dev',

    defaultDataSourceName: 'dicomweb',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'dicomweb',
        configuration: {
          friendlyName: 'DRIMbox',
          name: 'drimbox',
          wadoUriRoot: DICOMWEB_ROOT,
          qidoRoot: DICOMWEB_ROOT,
          wadoRoot: DICOMWEB_ROOT,
          qidoSupportsIncludeField: false,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: false,
          supportsWildcard: false,
          staticWado: false,
          bulkDataURI: { enabled: true },
          omitQuotationForMultipartRequest: true,
          // What the Source viewer serves first; anything else the BFF serves as received
          // (the Consumer passes lossless syntaxes the browser decodes through).
          acceptHeader: [FRAME_ACCEPT, FRAME_ACCEPT_HTJ2K, FRAME_ACCEPT_ANY],
        },
      },
    ],

    // --- HTTP errors, said in French by the page around OHIF (DB.VI-SO.28, issue 14) ------
    // Checked in the shipped 3.13.2 dist: appInit (app.bundle.*.js) makes
    // errorHandler.getHTTPErrorHandler() return this function; its DICOMweb client
    // (searches, metadata: 89.bundle.*.js qidoConfig/wadoConfig errorInterceptor) calls it
    // with an Error carrying status, request (the XHR) and response; the cornerstone
    // extension calls it with the error of every IMAGE_LOAD_FAILED / IMAGE_LOAD_ERROR event
    // (frames: the XHR itself, or an Error naming the status). Without it that listener
    // throws. Nothing is decided here: the error goes to panel/http-errors.js.
    httpErrorHandler: httpErrorHandler,
    // -------------------------------------------------------------------------------------
  };
})();
