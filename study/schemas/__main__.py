"""`python -m study.schemas [DIR]`: the JSON Schema of every file the product writes (default: docs/schemas)."""

import sys
from pathlib import Path

from study.schemas import write_json_schemas

for path in write_json_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")):
    print(path)
