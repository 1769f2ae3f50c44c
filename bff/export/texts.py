"""README.TXT and INDEX.HTM of a study download (French; IHE PDI recommends them,
DB.VI-SO.176). They describe the exam from the files themselves (patient identity as the
PACS holds it), list the series with their counts, and say how to open the exam."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from bff.export.pdi import InstanceFacts, PdiLayout, record_type

SEX = {"F": "féminin", "M": "masculin", "O": "autre"}
KINDS = {
    "KEY OBJECT DOC": "objet(s) clé (KOS / KIN)",
    "SR DOCUMENT": "compte(s) rendu(s) structuré(s)",
    "PRESENTATION": "état(s) de présentation",
    "ENCAP DOC": "document(s)",
    "IMAGE": "image(s)",
}


@dataclass(frozen=True)
class SeriesLine:
    folder: str
    number: str
    modality: str
    description: str
    count: int
    kind: str


@dataclass(frozen=True)
class Summary:
    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    institution: str
    study_date: str
    study_description: str
    accession_number: str
    series: tuple[SeriesLine, ...]
    total: int
    lossy: int
    native: int
    recompressed: int


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def french_date(value: Any) -> str:
    text = _text(value)
    if len(text) == 8 and text.isdigit():
        return f"{text[6:8]}/{text[4:6]}/{text[0:4]}"
    return text


def person_name(value: Any) -> str:
    """``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX`` shown as 'FAMILY GIVEN MIDDLE' (values as stored)."""
    alphabetic = _text(value).split("=")[0]
    return " ".join(p for p in alphabetic.split("^")[:3] if p)


def summarize(layout: PdiLayout) -> Summary:
    instances = layout.instances
    first: InstanceFacts | None = next(
        (f for f in instances if record_type(f.sop_class_uid) == "IMAGE"),
        instances[0] if instances else None,
    )
    series: dict[str, list[InstanceFacts]] = {}
    for facts in instances:
        series.setdefault("/".join(facts.file_id[:4]), []).append(facts)
    lines = []
    for folder, members in series.items():
        head = members[0]
        lines.append(
            SeriesLine(
                folder=folder,
                number=_text(head.series.get("SeriesNumber")),
                modality=_text(head.series.get("Modality")),
                description=_text(head.series.get("SeriesDescription")),
                count=len(members),
                kind=KINDS[record_type(head.sop_class_uid)],
            )
        )
    patient = first.patient if first else {}
    study = layout.study_values.get(first.study_uid, first.study) if first else {}
    return Summary(
        patient_name=person_name(patient.get("PatientName")),
        patient_id=_text(patient.get("PatientID")),
        birth_date=french_date(patient.get("PatientBirthDate")),
        sex=SEX.get(_text(patient.get("PatientSex")), _text(patient.get("PatientSex"))),
        institution=next((f.institution for f in instances if f.institution), ""),
        study_date=french_date(study.get("StudyDate")),
        study_description=_text(study.get("StudyDescription")),
        accession_number=_text(study.get("AccessionNumber")),
        series=tuple(lines),
        total=len(instances),
        lossy=sum(1 for f in instances if f.stored_lossy),
        native=sum(1 for f in instances if f.kept_native),
        recompressed=sum(1 for f in instances if f.recompressed),
    )


def _facts_lines(s: Summary) -> list[tuple[str, str]]:
    return [
        ("Patient", s.patient_name),
        ("Identifiant patient", s.patient_id),
        ("Date de naissance", s.birth_date),
        ("Sexe", s.sex),
        ("Établissement", s.institution),
        ("Date de l'examen", s.study_date),
        ("Examen", s.study_description),
        ("N° d'examen", s.accession_number),
    ]


HOW_TO_OPEN = [
    "Ce dossier suit le format DICOM des supports d'imagerie médicale (profil IHE PDI,",
    "option clé USB). Pour le consulter :",
    "  1. Décompressez l'archive ZIP (par exemple à la racine d'une clé USB).",
    "  2. Ouvrez le fichier DICOMDIR avec une visionneuse DICOM (logiciel de",
    "     visualisation d'images médicales) ; elle retrouve les images du dossier DICOM.",
    "Aucune visionneuse n'est fournie dans cette archive.",
]


def _notes(s: Summary) -> list[str]:
    notes = [
        "Les images sont enregistrées dans une syntaxe de transfert compressée sans perte,",
        "telles que le système d'archivage (PACS) les conserve.",
    ]
    if s.recompressed:
        notes.append(
            f"{s.recompressed} image(s) stockée(s) sans compression ont été compressées sans "
            "perte (JPEG-LS ou RLE) : les valeurs des pixels sont identiques."
        )
    if s.lossy:
        notes.append(
            f"Attention : {s.lossy} image(s) sont conservées par le PACS sous une forme "
            "compressée avec perte ; elles sont fournies telles quelles, sans autre "
            "modification."
        )
    if s.native:
        notes.append(
            f"{s.native} image(s) n'ont pas de compression sans perte adaptée ; elles sont "
            "fournies non compressées."
        )
    return notes


def readme_text(s: Summary) -> bytes:
    """README.TXT: UTF-8, CRLF line ends (opened by Windows' Notepad as well)."""
    lines = ["EXAMEN D'IMAGERIE MÉDICALE", "=" * 26, ""]
    lines += [f"{label} : {value}" for label, value in _facts_lines(s) if value]
    lines += ["", f"Séries ({len(s.series)}, {s.total} fichiers DICOM) :"]
    for line in s.series:
        title = " - ".join(p for p in (line.modality, line.description) if p)
        number = f"série {line.number}" if line.number else "série"
        lines.append(f"  {line.folder} : {number} {title} ({line.count} {line.kind})")
    lines += ["", "COMMENT OUVRIR L'EXAMEN", "-" * 23, *HOW_TO_OPEN, ""]
    lines += _notes(s)
    lines += [
        "",
        "Contenu : DICOMDIR (index de l'examen), DICOM/ (les fichiers DICOM),",
        "README.TXT (ce fichier), INDEX.HTM (le même résumé pour un navigateur).",
        "Ces données de santé sont personnelles : conservez-les en lieu sûr.",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


def index_html(s: Summary) -> bytes:
    def esc(value: str) -> str:
        return html.escape(value, quote=True)

    facts = "".join(
        f"<tr><th>{esc(label)}</th><td>{esc(value)}</td></tr>"
        for label, value in _facts_lines(s)
        if value
    )
    rows = "".join(
        "<tr>"
        f"<td>{esc(line.number)}</td><td>{esc(line.modality)}</td>"
        f"<td>{esc(line.description)}</td><td>{line.count} {esc(line.kind)}</td>"
        f"<td><code>{esc(line.folder)}</code></td></tr>"
        for line in s.series
    )
    steps = "".join(f"<li>{esc(step)}</li>" for step in HOW_TO_STEPS)
    notes = "".join(f"<p>{esc(note)}</p>" for note in _notes(s))
    page = f"""<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Examen d'imagerie médicale</title>
<style>body{{font-family:sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}}
th,td{{text-align:left;padding:.2rem .6rem;border-bottom:1px solid #ccc}}</style></head>
<body>
<h1>Examen d'imagerie médicale</h1>
<table>{facts}</table>
<h2>Séries ({len(s.series)}, {s.total} fichiers DICOM)</h2>
<table><tr><th>N°</th><th>Modalité</th><th>Description</th><th>Contenu</th><th>Dossier</th></tr>
{rows}</table>
<h2>Comment ouvrir l'examen</h2>
<ol>{steps}</ol>
{notes}
<p>Ces données de santé sont personnelles : conservez-les en lieu sûr.</p>
</body></html>
"""
    return page.replace("\n", "\r\n").encode("utf-8")


HOW_TO_STEPS = (
    "Décompressez l'archive ZIP (par exemple à la racine d'une clé USB).",
    "Ouvrez le fichier DICOMDIR avec une visionneuse DICOM (logiciel de visualisation "
    "d'images médicales) : elle retrouve les images du dossier DICOM.",
    "Aucune visionneuse n'est fournie dans cette archive.",
)
