"""Every method config on disk loads with its method's Config; bad configs fail naming the file and key."""
from __future__ import annotations

from dataclasses import fields

import pytest
import yaml

import methods.base
from engine.scripted_backend import ScriptedEngine
from methods import REGISTRY, ConfigError, get_method_class

METHODS_DIR = methods.base.METHODS_DIR  # kept: some tests point the loader at a scratch folder
CONFIG_FILES = sorted(METHODS_DIR.glob("*/configs/*.yaml"))


def method_name_of(path) -> str:
    return path.parent.parent.name


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: f"{method_name_of(p)}/{p.stem}")
def test_every_config_file_loads_with_its_methods_config(path):
    name = method_name_of(path)
    assert name in REGISTRY, f"{path}: configs for a method that is not in methods.REGISTRY"
    cls = get_method_class(name)
    config = cls.load_config(path.stem)
    assert isinstance(config, cls.Config)
    written = yaml.safe_load(path.read_text()) or {}
    assert {key: getattr(config, key) for key in written} == written  # every key written is the value read
    method = cls(ScriptedEngine(lambda m, p: ""), config)
    assert method.config is config


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_method_has_a_main_config_and_defaults_for_every_field(name):
    cls = get_method_class(name)
    assert cls.name == name
    assert cls.config_path("config_main").is_file()
    defaults = cls.Config()  # a field without a default would fail here
    main = cls.load_config("config_main")
    assert {f.name for f in fields(main)} == {f.name for f in fields(defaults)}


@pytest.fixture
def scratch_methods_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(methods.base, "METHODS_DIR", tmp_path)
    return tmp_path


def write_config(root, name: str, text: str):
    path = root / name / "configs" / "scratch.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_unknown_key_errors_with_the_file_name(scratch_methods_dir, name):
    main = (METHODS_DIR / name / "configs" / "config_main.yaml").read_text()
    path = write_config(scratch_methods_dir, name, main + "\nnum_agent_typo: 3\n")
    with pytest.raises(ConfigError) as error:
        get_method_class(name).load_config("scratch")
    message = str(error.value)
    assert str(path) in message and "num_agent_typo" in message and "\n" not in message


def test_wrong_type_errors_with_the_file_and_key(scratch_methods_dir):
    path = write_config(scratch_methods_dir, "llm_debate", "num_agents: three\n")
    with pytest.raises(ConfigError, match=rf"{path}.*num_agents"):
        get_method_class("llm_debate").load_config("scratch")


def test_out_of_range_value_names_the_key(scratch_methods_dir):
    write_config(scratch_methods_dir, "self_consistency", "parallel_num: 0\n")
    with pytest.raises(ConfigError, match="parallel_num must be at least 1"):
        get_method_class("self_consistency").load_config("scratch")


def test_missing_config_name_lists_the_available_ones():
    with pytest.raises(ConfigError, match="no such method config.*config_3rounds.*config_main"):
        get_method_class("llm_debate").load_config("config_nope")


def test_paper_configs_match_the_papers_settings():
    debate = get_method_class("llm_debate").load_config("config_paper")
    assert (debate.num_agents, debate.use_aggregator) == (5, True)
    mav = get_method_class("mav").load_config("config_paper")
    assert (mav.n_solutions, mav.n_max_verifiers, mav.verifier_temperature) == (2, 2, 0.0)
    for name in ("llm_debate", "mav"):
        text = get_method_class(name).config_path("config_paper").read_text()
        assert text.startswith("#") and "paper" in text.splitlines()[0].lower()  # says where it comes from
