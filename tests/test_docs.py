"""The repository documents itself: no file depends on documents outside it, and every pointer
into docs/ ("docs/math.md §3.2") names a file and a numbered section that exist.

Pure text checks (no JAX), so they run in well under a second.
"""

import functools
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# Design documents that once lived outside the repository. A mention is allowed only as a path
# into docs/ ("docs/robots.md"); a bare name, or one under another folder, is a dangling pointer.
EXTERNAL_DOC = re.compile(r"(?<!docs/)\b(?:design|algorithm|robots|style)\.md\b")
EXTERNAL_DIR = re.compile(r"/work/shared\b")
# "docs/math.md", optionally followed by sections: "§3", "§3.2, §4", "§5.2 and §6.4", or
# ", section 2.2" (ASCII-only files such as the URDFs).
SECTION_LIST = r"((?:(?:\s*,\s*|\s+and\s+|\s+)§\s?\d+(?:\.\d+)*)*)"
DOCS_POINTER = re.compile(r"docs/([\w-]+\.md)" + SECTION_LIST)
DOCS_SECTION_WORD = re.compile(r"docs/([\w-]+\.md),?\s+section\s+(\d+(?:\.\d+)*)")
# Inside docs/: "math.md §3.2" (a sibling file) and bare "§3.2" (the same file).
SIBLING_POINTER = re.compile(r"(?<![\w/.-])(?:docs/)?([\w-]+\.md)" + SECTION_LIST)
SECTION = re.compile(r"§\s?(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\s", re.MULTILINE)

SCANNED_DIRS = ("avips_jax", "experiments", "benchmarks", "tests", "scripts")
SCANNED_SUFFIXES = (".py", ".sh")


def _relative(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT))


def scanned_files() -> list[pathlib.Path]:
    """Code, tests, scripts, the notebooks, the authored URDFs and the packaging files."""
    files = [
        path
        for folder in SCANNED_DIRS
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in SCANNED_SUFFIXES and path.is_file()
    ]
    files += sorted((ROOT / "notebooks").glob("*.ipynb"))
    files += sorted((ROOT / "urdf").glob("*.urdf"))
    files += [ROOT / name for name in ("setup.py", "pyproject.toml") if (ROOT / name).is_file()]
    # This file spells out forbidden and broken pointers as test cases.
    return [path for path in files if path != pathlib.Path(__file__).resolve()]


@functools.cache
def headings(doc: str) -> frozenset[str]:
    """Section numbers of the numbered headings of docs/<doc> ("3", "3.2", ...)."""
    return frozenset(HEADING.findall((DOCS / doc).read_text(encoding="utf-8")))


def external_mentions(text: str) -> list[str]:
    """Each line of `text` that mentions an outside design document."""
    return [
        line.strip()
        for line in text.splitlines()
        if EXTERNAL_DOC.search(line) or EXTERNAL_DIR.search(line)
    ]


def bad_pointers(text: str) -> list[str]:
    """Pointers "docs/<file>.md [§N ...]" whose file or section does not exist."""
    bad = []
    for doc, sections in DOCS_POINTER.findall(text) + [
        (doc, f"§{number}") for doc, number in DOCS_SECTION_WORD.findall(text)
    ]:
        if not (DOCS / doc).is_file():
            bad.append(f"docs/{doc} (no such file)")
            continue
        bad += [f"docs/{doc} §{n}" for n in SECTION.findall(sections) if n not in headings(doc)]
    return bad


def test_docs_folder_exists_with_numbered_sections():
    for doc in ("README.md", "architecture.md", "math.md", "conventions.md", "robots.md"):
        assert (DOCS / doc).is_file(), f"docs/{doc} is missing"
    for doc in ("architecture.md", "math.md", "conventions.md", "robots.md"):
        assert headings(doc), f"docs/{doc} has no numbered headings to point to"


def test_docs_index_lists_every_page():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "README.md":
            assert f"({page.name})" in index, f"docs/README.md does not link {page.name}"


def findings(check) -> dict[str, list[str]]:
    """{file: what `check(text)` found in it} over the scanned files, files without findings
    left out."""
    found = {_relative(path): check(path.read_text(encoding="utf-8")) for path in scanned_files()}
    return {name: lines for name, lines in found.items() if lines}


def test_no_file_refers_to_documents_outside_the_repository():
    found = findings(external_mentions)
    assert not found, f"references to documents outside the repository: {found}"


def test_docs_pointers_name_existing_files_and_sections():
    found = findings(bad_pointers)
    assert not found, f"pointers to missing docs files or sections: {found}"


def test_docs_cross_references_resolve():
    found = {}
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        # Inside docs/ a sibling's bare name ("robots.md") is a local link.
        outside = [m for m in EXTERNAL_DOC.findall(text) if not (DOCS / m).is_file()]
        bad = [f"outside document: {m}" for m in outside + EXTERNAL_DIR.findall(text)]
        spans = []
        for match in SIBLING_POINTER.finditer(text):
            doc, sections = match.groups()
            spans.append(match.span())
            if not (DOCS / doc).is_file():
                if sections:  # "README.md" of another folder is fine without a section
                    bad.append(f"{doc} (no such file in docs/)")
                continue
            bad += [f"{doc} §{n}" for n in SECTION.findall(sections) if n not in headings(doc)]
        for match in SECTION.finditer(text):
            inside = any(start <= match.start() < end for start, end in spans)
            if not inside and match.group(1) not in headings(page.name):
                bad.append(f"§{match.group(1)} (own section)")
        if bad:
            found[page.name] = bad
    assert not found, f"dangling cross-references in docs/: {found}"


def test_readme_refers_only_to_documents_in_the_repository():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert not external_mentions(text)
    assert not bad_pointers(text)


@pytest.mark.parametrize(
    "text, ok",
    [
        ("see design.md §3.3", False),
        ("(algorithm.md §4.2)", False),
        ("written from `robots.md`", False),
        ("also /work/shared/robots.md", False),
        ("style.md", False),
        ("docs/robots.md §2.2", True),
        ("test_authored_urdf_matches_robots_md", True),
    ],
)
def test_external_pattern(text, ok):
    assert (not external_mentions(text)) == ok


@pytest.mark.parametrize(
    "text, bad",
    [
        ("docs/math.md §3.2", []),
        ("(docs/math.md §5.2, §6.4)", []),
        ("docs/math.md §9.2 and §99.1", ["docs/math.md §99.1"]),
        ("docs/robots.md, section 2.3 (joint", []),
        ("docs/robots.md, section 9.9", ["docs/robots.md §9.9"]),
        ("docs/nothing.md §1", ["docs/nothing.md (no such file)"]),
    ],
)
def test_pointer_pattern(text, bad):
    assert bad_pointers(text) == bad
