"""Regenerate the docs that are derived from code: `docs/events.schema.json`.

Run with `make docs`; `tests/test_events.py` fails when the committed file is stale.
"""

import json
from pathlib import Path

from joyvl_agent.events import event_json_schema

DOCS = Path(__file__).resolve().parent

(DOCS / "events.schema.json").write_text(json.dumps(event_json_schema(), indent=2) + "\n")
print("wrote", DOCS / "events.schema.json")
