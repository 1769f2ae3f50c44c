"""Study download: the exam as a ZIP in IHE PDI layout with a DICOMDIR, streamed,
lossless (DB.VI-SO.176). See docs/export.md."""
