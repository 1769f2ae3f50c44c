// @ts-check
// eslint (flat config) for ohif-config/: the page around OHIF (panel/, ES modules run in
// the browser), its node tests, and app-config.js (a classic script OHIF's index.html
// loads). Run by scripts/test through `npm run lint`.
import js from '@eslint/js';
import globals from 'globals';

/** Never parse text as HTML, never evaluate strings as code, no inline style. */
const SAFE_DOM = {
  'no-eval': 'error',
  'no-implied-eval': 'error',
  'no-new-func': 'error',
  'no-restricted-properties': [
    'error',
    { property: 'innerHTML', message: 'Text through textContent only (dom.js el()).' },
    { property: 'outerHTML', message: 'Text through textContent only (dom.js el()).' },
    { property: 'insertAdjacentHTML', message: 'Text through textContent only (dom.js el()).' },
    { object: 'document', property: 'write', message: 'Build elements with dom.js el().' },
  ],
  'no-restricted-syntax': [
    'error',
    {
      selector: "CallExpression[callee.property.name='setAttribute'][arguments.0.value='style']",
      message: 'No inline style (a CSP refuses it): a class in panel.css, or the CSSOM.',
    },
  ],
};

export default [
  { ignores: ['node_modules/'] },
  js.configs.recommended,
  {
    files: ['panel/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: globals.browser },
    rules: {
      ...SAFE_DOM,
      eqeqeq: 'error',
      'no-var': 'error',
      'prefer-const': 'error',
      'no-console': 'error',
    },
  },
  {
    // One DOM helper: elements are made by dom.js el(), nowhere else.
    files: ['panel/**/*.js'],
    ignores: ['panel/dom.js'],
    rules: {
      'no-restricted-syntax': [
        'error',
        ...SAFE_DOM['no-restricted-syntax'].slice(1),
        {
          selector: "CallExpression[callee.object.name='document'][callee.property.name='createElement']",
          message: 'One DOM helper: use el() from dom.js.',
        },
      ],
    },
  },
  {
    files: ['tests/**/*.js', 'eslint.config.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: globals.node },
    rules: { eqeqeq: 'error', 'no-var': 'error', 'prefer-const': 'error' },
  },
  {
    files: ['app-config.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'script', globals: globals.browser },
    rules: { ...SAFE_DOM, 'no-unused-vars': ['error', { caughtErrors: 'none' }] },
  },
];
