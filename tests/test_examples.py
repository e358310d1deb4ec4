"""The examples in examples/ run and print what the README says."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args],
                         capture_output=True, text=True, timeout=120, check=True)
    return out.stdout


def test_interaction_model_example_speaks_the_card():
    out = run_example("interaction_model.py")
    assert "speak: The card shows" in out
    readme = (ROOT / "README.md").read_text()
    assert out.splitlines()[0].strip() in readme


def test_readme_delegation_snippets_name_real_exports():
    import joyvl_agent.tools as tools

    readme = (ROOT / "README.md").read_text()
    for name in ("langchain_tool", "mcp_tool", "mcp_tools", "openai_model", "registry",
                 "webhook", "delegation_tool", "DelegationRequest", "DelegationResult"):
        assert name in readme and hasattr(tools, name)
