"""What every JSON file model shares: strict parsing of untrusted text, bounded in size and depth, its
first problem as one line naming the file, the field and the value; and the atomic write."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import from_json
from typing_extensions import Self

from study.core.data import DATASETS
from study.core.errors import UserError
from study.core.recipe import MAX_BATCH, MAX_SEED
from study.core.spec import ACTIVATIONS, ARCHS, MAX_CIFAR_DEPTH, NORMS, SHORTCUTS
from study.core.twin import BACKENDS
from study.files import atomic_write_text

# A file larger than this is refused before it is read (the largest the product writes, a compare.json
# or an exactness.json of many networks, is a few hundred KiB); nesting deeper than the JSON parser's
# limit (200 levels) is refused by the parser, never a RecursionError.
MAX_JSON_BYTES = 16 * 2**20

Backend = Literal[BACKENDS]  # type: ignore[valid-type]
Arch = Literal[ARCHS]  # type: ignore[valid-type]
Dataset = Literal[DATASETS]  # type: ignore[valid-type]
Shortcut = Literal[SHORTCUTS]  # type: ignore[valid-type]
Activation = Literal[ACTIVATIONS]  # type: ignore[valid-type]
Norm = Literal[NORMS]  # type: ignore[valid-type]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Depth = Annotated[int, Field(ge=1, le=MAX_CIFAR_DEPTH)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Batch = Annotated[int, Field(ge=1, le=MAX_BATCH)]
Number = Annotated[float, Field(ge=0)]  # finite (no file holds NaN or infinity: `Part`'s config)
Seconds = Number
Fraction = Annotated[float, Field(ge=0, le=1)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=10_000)]

# pydantic's names of a union's members and of a dict's keys in an error's location: not fields of the file
_UNION_TAGS = {"int", "float", "str", "bool", "none", "list", "dict"}
_TAG = re.compile(r"^([a-z-]+)?\[.*\]$")  # literal['inf'], function-after[...], [key]


class Part(BaseModel):
    """A part of a file: strict JSON types (no "1" for 1, no 1 for true), finite numbers only, unknown
    keys ignored (a file written by a newer version still reads)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", frozen=True)


class Open(Part):
    """A part whose other keys are kept as they are (a record of the environment: versions, placement)."""

    model_config = ConfigDict(extra="allow")


class Record(Part):
    """A whole JSON file the product writes and reads; `FILE` is its name, `KIND` what messages call it."""

    FILE: ClassVar[str]
    KIND: ClassVar[str]

    @classmethod
    def read(cls, path: Path, error: type[UserError] = UserError) -> Self:
        """The file at `path`, validated; `error` with one line on the first problem."""
        return cls.check(read_json(path, error, cls.KIND), f"{cls.KIND} file {path}", error)

    @classmethod
    def check(cls, data, named: str, error: type[UserError] = UserError) -> Self:
        """`data` (parsed JSON) validated as this file; `error` naming it (`named`) on the first problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as invalid:
            raise error(f"{named}: {one_problem(invalid)}") from None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, by_alias=True, exclude_unset=True) + "\n"

    def write(self, path: Path) -> Self:
        """The record as its file, atomically (`study.files.atomic_write_text`)."""
        atomic_write_text(Path(path), self.to_json())
        return self

    def as_dict(self) -> dict:
        """The record as the plain dict its readers index: what the file held, less unknown keys."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def read_json(path: Path, error: type[UserError] = UserError, kind: str = ""):
    """A JSON file's content, parsed within the bounds above (size, nesting), unvalidated: for a file
    whose kind is known only once read (`plan --throughput`); `error` with one line if unreadable."""
    path = Path(path)
    named = f"{kind} file {path}" if kind else str(path)
    try:
        if not path.is_file():
            raise error(f"{named} is missing or not a regular file")
        if path.stat().st_size > MAX_JSON_BYTES:
            raise error(f"{named} is larger than {MAX_JSON_BYTES >> 20} MiB; not one this tool wrote")
        return from_json(path.read_bytes(), allow_inf_nan=False)
    except OSError as problem:
        raise error(f"cannot read {named}: {problem.strerror or problem}") from None
    except ValueError as invalid:  # the parser's errors, nesting too deep included
        raise error(f"{named} is not valid JSON ({str(invalid).removeprefix('Invalid JSON: ')})") from None


def one_problem(invalid: ValidationError) -> str:
    """The first problem pydantic found, as one line: where (dotted field path), the value, and why."""
    problem = invalid.errors(include_url=False)[0]
    if problem["type"] == "json_invalid":
        return f"not valid JSON ({problem['msg'].removeprefix('Invalid JSON: ')})"
    where = [str(part) for part in problem["loc"]]
    while where and (where[-1] in _UNION_TAGS or _TAG.match(where[-1]) or where[-1].startswith("constrained-")):
        where.pop()
    where = [part if part.isidentifier() or part.isdigit() else repr(part) for part in where]  # a key: quoted
    message = problem["msg"].removeprefix("Value error, ")
    if problem["type"] in ("model_type", "dict_type", "model_attributes_type"):
        message = "expected a JSON object"
    if problem["type"] == "missing":
        return f"lacks {'.'.join(where)}"
    value = repr(problem["input"])
    value = value if len(value) <= 60 else value[:57] + "..."
    return f"{'.'.join(where) or 'the file'} is {value}: {message}"
