from pathlib import Path

import pytest

from joyvl_agent import Config, ConfigError, load_config


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_any_source():
    c = load_config()
    assert isinstance(c, Config)
    assert c.db == Path("joyvl.db")
    assert c.source.interval_s == 1.0 and c.model.dialect is None  # None: chosen per backend
    assert c.server.host == "127.0.0.1"


def test_sections_exist():
    for section in ("model", "source", "codec", "memory", "delegation", "auth", "mcp", "ui",
                    "speech"):
        assert section in Config.model_fields


def test_precedence_file_then_env_then_flags(monkeypatch, tmp_path):
    write(Path("joyvl.toml"), '[model]\nurl = "http://file/v1"\nname = "f"\n'
          '[source]\ninterval_s = 2.0\n')
    assert load_config().model.url == "http://file/v1"
    monkeypatch.setenv("JOYVL_MODEL__URL", "http://env/v1")
    monkeypatch.setenv("JOYVL_SOURCE__INTERVAL_S", "3")
    c = load_config()
    assert (c.model.url, c.model.name, c.source.interval_s) == ("http://env/v1", "f", 3.0)
    c = load_config(overrides={"model": {"url": "http://flag/v1", "name": None}})
    assert (c.model.url, c.model.name) == ("http://flag/v1", "f")  # None flags keep lower values


def test_explicit_file_beats_env_file_beats_default(monkeypatch, tmp_path):
    write(Path("joyvl.toml"), '[model]\nname = "default"\n')
    env_file = write(tmp_path / "env.toml", '[model]\nname = "env"\n')
    flag_file = write(tmp_path / "flag.toml", '[model]\nname = "flag"\n')
    assert load_config().model.name == "default"
    monkeypatch.setenv("JOYVL_CONFIG", str(env_file))
    assert load_config().model.name == "env"
    assert load_config(flag_file).model.name == "flag"


def test_db_from_env_and_flag(monkeypatch):
    monkeypatch.setenv("JOYVL_DB", "/tmp/x.db")
    assert load_config().db == Path("/tmp/x.db")
    assert load_config(overrides={"db": "y.db"}).db == Path("y.db")


def test_model_url_alias(monkeypatch):
    monkeypatch.setenv("JOYVL_MODEL_URL", "http://alias/v1")
    assert load_config().model.url == "http://alias/v1"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[model]\nurll = "x"\n', "unknown key 'urll' in \\[model\\]"),
        ("colour = 1\n", "unknown key 'colour' at top level"),
        ('[nope]\na = 1\n', "unknown key 'nope'"),
        ('[source]\ninterval_s = 0.01\n', "source.interval_s"),
        ('[auth]\ntokens = [{token = "t", scope = "admin"}]\n', "auth.tokens.0.scope"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_key(toml, message):
    write(Path("joyvl.toml"), toml)
    with pytest.raises(ConfigError, match=message):
        load_config()


def test_unknown_env_variable_is_named(monkeypatch):
    monkeypatch.setenv("JOYVL_MODEL__URLL", "x")
    with pytest.raises(ConfigError, match="JOYVL_MODEL__URLL"):
        load_config()
    monkeypatch.delenv("JOYVL_MODEL__URLL")
    monkeypatch.setenv("JOYVL_SPEED", "x")
    with pytest.raises(ConfigError, match="JOYVL_SPEED"):
        load_config()


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_secrets_are_not_printed():
    c = load_config(overrides={"model": {"api_key": "sk-secret"}})
    assert "sk-secret" not in repr(c) and "sk-secret" not in c.model_dump_json()
    assert c.model.api_key is not None and c.model.api_key.get_secret_value() == "sk-secret"


def test_bad_route_regex_is_a_named_config_error():
    write(Path("joyvl.toml"), '[delegation]\nroutes = [{match = "(", target = "x"}]\n')
    with pytest.raises(ConfigError, match=r"delegation.routes.0.match.*regular expression"):
        load_config()
