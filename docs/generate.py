"""Regenerate the docs that are derived from code: `docs/events.schema.json` and
`docs/scenario.schema.json`.

Run with `make docs`; `tests/test_events.py` and `tests/test_eval_runner.py` fail when a
committed file is stale.
"""

import json
from pathlib import Path

from joyvl_agent.eval import scenario_json_schema
from joyvl_agent.events import event_json_schema

DOCS = Path(__file__).resolve().parent

for name, schema in (("events.schema.json", event_json_schema()),
                     ("scenario.schema.json", scenario_json_schema())):
    (DOCS / name).write_text(json.dumps(schema, indent=2) + "\n")
    print("wrote", DOCS / name)
