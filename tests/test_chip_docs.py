"""docs/chip_profiles.md stands alone: every source key and section a shipped profile cites is in it.

A shipped profile tags its facts with source keys (``source: S1 S2``, ``sources: {S1: ...}``)
and names, in its header comment, the section of ``docs/chip_profiles.md`` that covers its chip
("Facts: docs/chip_profiles.md section 3"). The document's "Sources" section lists each key
as ``- **S1**: <full citation>``. Torch-free.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import neuroprune
from neuroprune.chip.profiles import shipped_profile_paths

REPOSITORY = Path(neuroprune.__file__).parent.parent
DOCUMENT = REPOSITORY / "docs" / "chip_profiles.md"
SHIPPED = shipped_profile_paths()

SECTION_HEADING = re.compile(r"^## (\d+)\. (.+)$", re.MULTILINE)
SOURCE_ENTRY = re.compile(r"^- \*\*(S\d+)\*\*: \S", re.MULTILINE)
SOURCE_KEY = re.compile(r"\bS\d+\b")
SECTION_CITATION = re.compile(
    r"docs/chip_profiles\.md\s+sections?\s+(\d+(?:(?:,\s*|\s+and\s+)\d+)*)"
)

pytestmark = pytest.mark.skipif(
    not DOCUMENT.is_file(), reason="an installed wheel ships no docs folder"
)


def document_sections(text: str) -> dict[int, str]:
    """The document's numbered sections (``## N. Title``), as number -> body."""
    headings = list(SECTION_HEADING.finditer(text))
    ends = [heading.start() for heading in headings[1:]] + [len(text)]
    return {
        int(heading.group(1)): text[heading.start() : end]
        for heading, end in zip(headings, ends, strict=True)
    }


def listed_source_keys(text: str) -> list[str]:
    """The keys the document's "Sources" section gives a citation for, in order."""
    sources = [
        body
        for body in document_sections(text).values()
        if body.splitlines()[0].endswith(". Sources")
    ]
    assert len(sources) == 1, "docs/chip_profiles.md needs exactly one '## N. Sources' section"
    return SOURCE_ENTRY.findall(sources[0])


def profile_source_keys(profile_text: str) -> set[str]:
    """Every source key a profile mentions: in ``source:``, ``sources:``, notes and comments."""
    return set(SOURCE_KEY.findall(profile_text))


def header_comment(profile_text: str) -> str:
    """The comment lines at the top of a profile, joined into one string."""
    lines = []
    for line in profile_text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# "))
    return " ".join(lines)


def cited_sections(header: str) -> set[int]:
    """The section numbers a header cites ("section 3", "sections 2 and 11")."""
    return {
        int(number)
        for citation in SECTION_CITATION.findall(header)
        for number in re.findall(r"\d+", citation)
    }


def missing_source_keys(profile_text: str, document_text: str) -> set[str]:
    """Source keys a profile uses that the document's source list does not give."""
    return profile_source_keys(profile_text) - set(listed_source_keys(document_text))


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("stem", sorted(SHIPPED))
def test_every_source_key_a_profile_uses_is_listed(stem: str) -> None:
    profile_text = read(SHIPPED[stem])
    assert profile_source_keys(profile_text), f"{stem}.yaml cites no source"
    missing = missing_source_keys(profile_text, read(DOCUMENT))
    assert not missing, f"{stem}.yaml cites {sorted(missing)}, not listed in docs/chip_profiles.md"


@pytest.mark.parametrize("stem", sorted(SHIPPED))
def test_every_section_a_profile_header_cites_exists(stem: str) -> None:
    cited = cited_sections(header_comment(read(SHIPPED[stem])))
    assert cited, f"{stem}.yaml: the header names no section of docs/chip_profiles.md"
    sections = document_sections(read(DOCUMENT))
    missing = cited - set(sections)
    assert not missing, f"{stem}.yaml cites sections {sorted(missing)} that the document lacks"
    for number in cited:
        assert f"`{stem}.yaml`" in sections[number], f"section {number} does not name {stem}.yaml"


def test_source_list_has_each_key_once() -> None:
    keys = listed_source_keys(read(DOCUMENT))
    assert keys, "the Sources section lists no source"
    assert len(keys) == len(set(keys)), sorted(key for key in keys if keys.count(key) > 1)


def test_a_key_missing_from_the_document_is_reported() -> None:
    document_text = read(DOCUMENT)
    without_s33 = re.sub(r"^- \*\*S33\*\*: .*$", "", document_text, flags=re.MULTILINE)
    assert missing_source_keys(read(SHIPPED["speck"]), document_text) == set()
    assert missing_source_keys(read(SHIPPED["speck"]), without_s33) == {"S33"}


def test_section_citations_are_parsed() -> None:
    header = header_comment("# Darwin II. Facts: docs/chip_profiles.md sections 2 and 11. Only\n")
    assert cited_sections(header) == {2, 11}
    assert cited_sections("Facts: docs/chip_profiles.md section 12, from sinabs") == {12}
    assert cited_sections("no citation here") == set()
