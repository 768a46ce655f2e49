"""The OpenAPI document is a contract clients generate code from: its paths and operations
(ids, parameters, request bodies, responses, in order) stay as recorded in
``openapi_paths.json`` unless the API is meant to change. After a deliberate change, record
the new document with ``JOURNEY_RECORD_OPENAPI=1 pytest tests/service/test_openapi.py`` and
review the diff."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from journey.service import create_app
from journey.settings import Settings

RECORDED = Path(__file__).with_name("openapi_paths.json")


def _document(tmp_path: Path) -> dict[str, Any]:
    # Building the document starts nothing: the log and the store are opened by the lifespan.
    settings = Settings(
        broker=f"embedded://{tmp_path / 'log.db'}", store=f"sqlite:///{tmp_path / 'views.db'}"
    )
    spec = create_app(settings).openapi()
    return {"info": spec["info"], "paths": spec["paths"]}


def test_the_openapi_paths_and_operations_are_as_recorded(tmp_path: Path) -> None:
    document = _document(tmp_path)
    if os.environ.get("JOURNEY_RECORD_OPENAPI") == "1":
        RECORDED.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    recorded = json.loads(RECORDED.read_text())
    assert list(document["paths"]) == list(recorded["paths"]), "paths added, lost or reordered"
    for path, item in recorded["paths"].items():
        assert list(document["paths"][path]) == list(item), f"{path}: methods differ"
        for method, operation in item.items():
            assert document["paths"][path][method] == operation, f"{method.upper()} {path}"
    assert document["info"] == recorded["info"]
    assert not (tmp_path / "log.db").exists(), "building the document opened the log"
