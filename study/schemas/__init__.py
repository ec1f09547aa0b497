"""Every JSON file the product writes and reads, described once as a pydantic model used both to write
it and to read it back: `study.json`, `settle.json`, `timings.json` (`study_folder`), `run.json` and
`summary.json` (`run`), `exactness.json` (`exactness`), `compare.json` (`comparison`). Reading is
strict (JSON's own types, finite numbers, known names), bounded (size, nesting) and ends in one line
naming the file, the field and the value (`base`). `python -m study.schemas DIR` writes their JSON
Schemas (docs/schemas/). The CSV tables are checked by `study.verdicts.inputs`."""

from __future__ import annotations

import json
from pathlib import Path

from study.schemas.base import Record
from study.schemas.comparison import Comparison
from study.schemas.exactness import Exactness
from study.schemas.run import RunState, Summary
from study.schemas.study_folder import SettleFile, StudyFile, TimingsFile

RECORDS: tuple[type[Record], ...] = (StudyFile, SettleFile, TimingsFile, RunState, Summary, Exactness, Comparison)


def json_schemas() -> dict[str, str]:
    """Each file's JSON Schema (as validation reads it), by the schema file's name: study.schema.json, ..."""
    return {
        record.FILE.replace(".json", ".schema.json"): json.dumps(
            record.model_json_schema(by_alias=True, mode="validation") | {"title": record.FILE}, indent=2
        )
        + "\n"
        for record in RECORDS
    }


def write_json_schemas(folder: Path) -> list[Path]:
    from study.files import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in json_schemas().items():
        atomic_write_text(folder / name, text)
        written.append(folder / name)
    return written
