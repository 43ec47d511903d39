"""Write the stream contracts' JSON Schemas (generated from the structs in gatekeeper.core) to streams/.

python scripts/write_contracts.py [TARGET_DIR]     # default: streams/ of this checkout
"""

from __future__ import annotations

import sys
from pathlib import Path

from gatekeeper.core.contracts import render, schemas


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "streams"
    for file_name, schema in schemas().items():
        (target / file_name).write_text(render(schema), encoding="utf-8")
        print(f"wrote {target / file_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
