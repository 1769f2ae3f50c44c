// The progress request names the viewer's first study, so that the balancer sends it to
// the replica retrieving that study (panel/api.js, docs/deployment.md).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { progressUrl } from '../panel/api.js';

describe('progressUrl', () => {
  it('names the first study of the viewer URL', () => {
    assert.equal(
      progressUrl('?StudyInstanceUIDs=1.2.3,4.5.6&lng=fr'),
      '/api/progress?studyUID=1.2.3',
    );
  });
  it('stays plain without a study', () => {
    assert.equal(progressUrl(''), '/api/progress');
    assert.equal(progressUrl('?StudyInstanceUIDs='), '/api/progress');
  });
  it('encodes what it passes on', () => {
    assert.equal(progressUrl('?StudyInstanceUIDs=a%26b'), '/api/progress?studyUID=a%26b');
  });
});
