"""DB.VI-CO.197: the Consumer accepts a Key Image Note from a Source (read for its key
images, not displayed), while other KOS (the DRIM-M manifest) stay refused (E301)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from bff.dicomweb.key_images import KOS_SOP_CLASS_UID
from bff.origins.conformance import check_instance, key_image_note
from bff.origins.errors import SourceError


def kos(code_value: str, scheme: str = "DCM") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")
    ds.SOPClassUID = KOS_SOP_CLASS_UID
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator = code_value, scheme
    ds.ConceptNameCodeSequence = Sequence([title])
    return ds


def test_a_key_image_note_is_accepted() -> None:
    assert key_image_note(kos("113000"))
    check_instance(kos("113004"))


@pytest.mark.parametrize(
    ("code", "scheme"), [("113030", "DCM"), ("113001", "DCM"), ("113000", "99X")]
)
def test_other_kos_are_e301(code: str, scheme: str) -> None:
    assert not key_image_note(kos(code, scheme))
    with pytest.raises(SourceError) as raised:
        check_instance(kos(code, scheme))
    assert raised.value.code == "E301"
