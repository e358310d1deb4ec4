"""`joyvl eval`: play scenarios through the real session loop and score when it speaks."""

from __future__ import annotations

import asyncio
import fnmatch
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import JoyVLError
from .eval._scenario import CAPABILITIES

if TYPE_CHECKING:
    from .eval import EvalRun, Scenario, ScenarioScore

__all__ = ["eval_command"]


def _pick(specs: tuple[str, ...], capabilities: tuple[str, ...],
          names: tuple[str, ...]) -> tuple[list[Scenario], str | None]:
    from .eval import SUITES, ScenarioError, builtin_suite, load_scenarios

    scenarios: list[Scenario] = []
    suite = None
    for spec in specs or ("smoke",):
        if spec in SUITES and not Path(spec).exists():
            scenarios += builtin_suite(spec)
            suite = spec if suite is None else f"{suite}+{spec}"
        elif not Path(spec).exists():
            raise ScenarioError(f"no scenario file or folder {spec!r}, and no built-in suite "
                                f"of that name (built-in: {', '.join(SUITES)})")
        else:
            scenarios += load_scenarios(spec)
    if capabilities:
        scenarios = [s for s in scenarios if s.capability in capabilities]
    if names:
        scenarios = [s for s in scenarios if any(fnmatch.fnmatch(s.name, n) for n in names)]
    if not scenarios:
        raise click.ClickException("no scenario left to run: check the names and filters")
    return scenarios, suite


def _line(score: ScenarioScore) -> str:
    m = score.metrics
    pct = f"{m.matched}/{m.windows} windows"
    extra = f", {m.false_alarms} false alarm(s)" if m.false_alarms else ""
    delay = f", delay p95 {m.delay_p95_s:.2f} s" if m.delay_p95_s is not None else ""
    errs = f", {len(score.errors)} error(s)" if score.errors else ""
    return f"{score.name:<34} {pct}{extra}{delay}{errs}"


@click.command("eval")
@click.argument("scenarios", nargs=-1, metavar="[SCENARIO_OR_SUITE]...")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("eval-results"), show_default=True,
              help="Folder for results.json, summary.md, report.html and runs.db.")
@click.option("--model-url", default=None,
              help="Score the model at this OpenAI-compatible URL (default: the oracle).")
@click.option("--model", "model_name", default=None, help="Served model name at --model-url.")
@click.option("--api-key", envvar="OPENAI_API_KEY", default=None,
              help="Bearer key for --model-url [env OPENAI_API_KEY].")
@click.option("--oracle-latency", type=click.FloatRange(0, 60), default=0.0,
              show_default=True, help="The oracle's compute time per call, in seconds.")
@click.option("--realtime", is_flag=True,
              help="Play on the wall clock (default: virtual time, as fast as possible).")
@click.option("--judge-url", default=None,
              help="OpenAI-compatible URL of an LLM judge for `judge` checks.")
@click.option("--judge-model", default=None, help="Model name of the judge.")
@click.option("--judge-api-key", envvar="JUDGE_API_KEY", default=None,
              help="Bearer key for --judge-url [env JUDGE_API_KEY].")
@click.option("--capability", "capabilities", multiple=True, type=click.Choice(CAPABILITIES),
              help="Only scenarios of this capability (repeatable).")
@click.option("--name", "names", multiple=True,
              help="Only scenarios whose name matches this glob (repeatable).")
@click.option("--media-cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where rendered synth clips are kept (default: OUT/media).")
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Write the scenarios as YAML files into this folder and exit.")
@click.option("--schema", is_flag=True, help="Print the scenario JSON Schema and exit.")
@click.pass_obj
def eval_command(state: Any, scenarios: tuple[str, ...], out_dir: Path, model_url: str | None,
                 model_name: str | None, api_key: str | None, oracle_latency: float,
                 realtime: bool, judge_url: str | None, judge_model: str | None,
                 judge_api_key: str | None, capabilities: tuple[str, ...], names: tuple[str, ...],
                 media_cache: Path | None, list_only: bool, export_dir: Path | None,
                 schema: bool) -> None:
    """Score when the assistant speaks, on scenario files, folders or a built-in suite.

    SCENARIO_OR_SUITE is a YAML/JSON scenario file, a folder of them, or a built-in suite:
    `suite` (all 27+ scenarios, 3 per capability) or `smoke` (one per capability, the
    default). Without --model-url the oracle answers: it is not a model, and the figures
    measure the system (missed windows, added delay, clock drift). Exits 1 when a scenario
    could not run (the reports are still written).
    """
    from .eval import dump_scenario, scenario_json_schema
    from .eval._report import fmt

    if model_url is None and model_name is not None:
        raise click.UsageError("--model names the model at --model-url: give --model-url too")
    if model_url is not None and oracle_latency:
        raise click.UsageError("--oracle-latency only applies to the oracle, not --model-url")
    try:
        if schema:
            click.echo(json.dumps(scenario_json_schema(), indent=2))
            return
        picked, suite = _pick(scenarios, capabilities, names)
        if list_only:
            for s in picked:
                click.echo(f"{s.name:<34} {s.capability:<12} {len(s.expect):>3} windows  "
                           f"{s.description}")
            return
        if export_dir is not None:
            export_dir.mkdir(parents=True, exist_ok=True)
            for s in picked:
                (export_dir / f"{s.name}.yaml").write_text(dump_scenario(s), encoding="utf-8")
            click.echo(f"wrote {len(picked)} scenario file(s) to {export_dir}")
            return
        config = state.config()
        run = asyncio.run(_evaluate(
            picked, out_dir, config=config, model_url=model_url, model=model_name,
            api_key=api_key, oracle_latency_s=oracle_latency, realtime=realtime,
            judge_url=judge_url, judge_model=judge_model, judge_api_key=judge_api_key,
            media_dir=media_cache, suite=suite))
    except (JoyVLError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    overall = run.metrics["overall"]
    click.echo(f"\noverall: P {fmt(overall.precision)}  R {fmt(overall.recall)}  "
               f"F1 {fmt(overall.f1)}  time score {fmt(overall.time_score)}  "
               f"added delay p95 {fmt(overall.added_delay_p95_s)} s")
    if model_url is None:
        click.echo("(oracle: these figures measure the system, not a model)")
    for name, path in run.paths.items():
        click.echo(f"{name}: {path}")
    failed = [s.name for s in run.scores if any(e.startswith("could not run") for e in s.errors)]
    if failed:
        raise click.ClickException(f"{len(failed)} scenario(s) could not run: "
                                   f"{', '.join(failed)} (see their errors in the report)")


async def _evaluate(picked: list[Scenario], out_dir: Path, **kw: Any) -> EvalRun:
    from .eval import evaluate

    return await evaluate(picked, out_dir,
                          progress=lambda score: click.echo(_line(score)), **kw)
