"""``scripts/bench``: the reference CT benchmark in Debian's Chromium (issue 5).
Not part of ``scripts/test``; see docs/performance.md."""
