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

  // What the BFF shows around OHIF (identity from the KOS on opening, DB.VI-CS.29):
  // a separate script, loaded after the page, never touching OHIF's own code.
  var panel = document.createElement('script');
  panel.src = '/drimbox/panel.js';
  panel.defer = true;
  document.head.appendChild(panel);

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

  // Frames are asked for as lossy HTJ2K (1.2.840.10008.1.2.4.203). OHIF uses this array
  // verbatim as the Accept header of every /frames/N request (XHR and streaming fetch):
  // generateAcceptHeader() returns a non-empty configured acceptHeader unchanged, and
  // requestTransferSyntaxUID cannot express HTJ2K (its typeForTS table stops at 4.93).
  // Written unquoted, matching omitQuotationForMultipartRequest (which only affects the
  // generated header).
  var FRAME_ACCEPT_ANY = 'multipart/related; type=application/octet-stream; transfer-syntax=*';
  var FRAME_ACCEPT =
    'multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.203';

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
    customizationService: {},

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
    // of the displayed series and of the next ones, closest first.
    studyPrefetcher: {
      enabled: true,
      displaySetsCount: 2,
      maxNumPrefetchRequests: 10,
      order: 'closest', // 'closest' | 'downward' | 'upward'
    },
    showErrorDetails: 'production',

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
          // HTJ2K first (what the Source viewer serves); anything else the BFF serves as
          // received (the Consumer passes lossless syntaxes the browser decodes through).
          acceptHeader: [FRAME_ACCEPT, FRAME_ACCEPT_ANY],
        },
      },
    ],

    // --- Error hook (a later issue maps HTTP statuses to French messages) --------------
    // httpErrorHandler: function (error) { ... error.status ... },
    // -------------------------------------------------------------------------------------
  };
})();
