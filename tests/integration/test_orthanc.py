"""The demo PACS: Debian's Orthanc with the DICOMweb plugin, holding the demo study."""

from __future__ import annotations

import email.parser
import os
import shutil
from pathlib import Path

import httpx
import pydicom
import pytest

from bff.demo.dataset import write_demo_study
from bff.demo.orthanc import ORTHANC_BINARY, OrthancProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which(ORTHANC_BINARY) is None, reason="Orthanc not installed"),
]


def _parts(response: httpx.Response) -> list[bytes]:
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser().parsebytes(head + response.content)
    assert message.is_multipart()
    return [part.get_payload(decode=True) for part in message.get_payload()]  # type: ignore[misc, union-attr]


def test_orthanc_serves_the_demo_study(tmp_path: Path) -> None:
    study = write_demo_study(tmp_path / "data", n_slices=8)
    orthanc = OrthancProcess(tmp_path / "orthanc")
    with orthanc:
        pid = orthanc.pid
        assert pid is not None
        ids = orthanc.upload([*study.instance_files, study.kos_path])
        assert len(ids) == study.n_instances + 1
        assert orthanc.has_study(study.study_uid)
        assert not orthanc.has_study("1.2.3.4")
        with httpx.Client(base_url=orthanc.dicomweb_url, timeout=30) as client:
            found = client.get("/studies", params={"StudyInstanceUID": study.study_uid})
            assert found.status_code == 200
            assert [s["0020000D"]["Value"][0] for s in found.json()] == [study.study_uid]
            series_uid = study.series_uids[1]
            accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
            response = client.get(
                f"/studies/{study.study_uid}/series/{series_uid}", headers={"Accept": accept}
            )
            assert response.status_code == 200
            parts = _parts(response)
            assert len(parts) == 8
            sent = {p.read_bytes() for p in study.instance_files if p.parent.name == "S002"}
            for part in parts:
                ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(part))
                assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"
                assert ds.SeriesInstanceUID == series_uid
            # Stored as is: Orthanc returns the very bytes uploaded.
            assert set(parts) == sent
    assert not orthanc.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
