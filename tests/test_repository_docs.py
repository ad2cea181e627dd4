"""Docstrings cite only documents the repository has (docs/*.md), never notes kept elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

import neuroprune

PACKAGE = Path(neuroprune.__file__).parent
REPOSITORY = PACKAGE.parent
OUTSIDE_NOTES = re.compile(r"(?<![\w/])(pruning_algorithms|lava_notes|review|architecture)\.md")
DOCS_CITATION = re.compile(r"docs/([\w.-]+\.md)")


def package_texts(*patterns: str) -> dict[Path, str]:
    """The package's files matching ``patterns``, by path."""
    paths = {path for pattern in patterns for path in PACKAGE.rglob(pattern)}
    return {path: path.read_text(encoding="utf-8") for path in sorted(paths)}


def test_no_module_cites_notes_outside_the_repository():
    cited = {
        f"{path.relative_to(REPOSITORY)}: {match.group(0)}"
        for path, text in package_texts("*.py", "*.yaml").items()
        for match in OUTSIDE_NOTES.finditer(text)
    }
    assert not cited, sorted(cited)


def test_every_document_a_module_cites_exists():
    # Modules, the shipped profiles (their headers cite docs/chip_profiles.md) and the package's
    # READMEs.
    if not (REPOSITORY / "docs").is_dir():  # an installed wheel ships no docs folder
        return
    missing = {
        f"{path.relative_to(REPOSITORY)}: docs/{name}"
        for path, text in package_texts("*.py", "*.yaml", "*.md").items()
        for name in DOCS_CITATION.findall(text)
        if not (REPOSITORY / "docs" / name).is_file()
    }
    assert not missing, sorted(missing)
