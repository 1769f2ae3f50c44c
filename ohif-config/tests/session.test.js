// @ts-check
// The session's end in the viewer (issue 14): what it says (panel/format.js) and how it
// stops the image requests not yet sent (panel/session.js).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { logoutHint, sessionEndTexts } from '../panel/format.js';
import { stopImageRequests } from '../panel/session.js';

describe('sessionEndTexts', () => {
  it('sends a patient back to the link of her report', () => {
    const texts = sessionEndTexts('patient', 'report');
    assert.equal(texts.title, 'Votre session a pris fin');
    assert.match(texts.lines.join(' '), /rouvrez le lien figurant dans votre compte rendu/);
    assert.match(texts.lines.join(' '), /FranceConnect\+/);
    assert.equal(texts.link, null);
  });
  it('sends a professional who came by the report link back to it', () => {
    const texts = sessionEndTexts('professional', 'report');
    assert.match(texts.lines.join(' '), /rouvrez le lien du compte rendu/);
    assert.match(texts.lines.join(' '), /Pro Santé Connect/);
  });
  it("sends a professional on the Consumer back to the Consumer's page, with a link", () => {
    const texts = sessionEndTexts('professional', 'consumer');
    assert.match(texts.lines.join(' '), /DRIMbox Consommatrice/);
    assert.deepEqual(texts.link, { href: '/consumer', text: 'Revenir à la DRIMbox Consommatrice' });
  });
  it('says why the images are gone, whoever reads it', () => {
    for (const [profile, reopen] of [['patient', 'report'], ['professional', 'consumer'], [undefined, undefined]]) {
      assert.match(sessionEndTexts(profile, reopen).lines[0], /plus aucune n'est demandée/);
    }
  });
});

describe('logoutHint', () => {
  it("names the account the person signed in with, when the page knows it", () => {
    assert.match(logoutHint('patient'), /compte FranceConnect :$/);
    assert.match(logoutHint('professional'), /compte Pro Santé Connect :$/);
    assert.match(logoutHint(undefined), /FranceConnect ou Pro Santé Connect/);
  });
});

describe('stopImageRequests', () => {
  it("empties every queue of cornerstone's request pools", () => {
    /** @type {string[]} */
    const cleared = [];
    const pool = (/** @type {string} */ name) => ({
      clearRequestStack: (/** @type {string} */ type) => void cleared.push(name + ':' + type),
    });
    const emptied = stopImageRequests({ imageLoadPoolManager: pool('load'), imageRetrievalPoolManager: pool('retrieve') });
    assert.equal(emptied, 8);
    assert.ok(cleared.includes('load:prefetch') && cleared.includes('retrieve:interaction'));
  });
  it('does what it can without cornerstone, or with a pool that refuses a type', () => {
    assert.equal(stopImageRequests(undefined), 0);
    assert.equal(stopImageRequests({}), 0);
    const picky = {
      clearRequestStack: (/** @type {string} */ type) => {
        if (type === 'compute') throw new Error('unknown type');
      },
    };
    assert.equal(stopImageRequests({ imageLoadPoolManager: picky }), 3);
  });
});
