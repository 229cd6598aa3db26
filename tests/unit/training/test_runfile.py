"""A run is a file: `tunebridge train --config` reads YAML or JSON, the flags given replace its keys,
mistakes name the file and the key, and every run folder's config.yaml reruns its run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from backend.cli import main as cli_main
from backend.errors import InvalidRequest
from backend.training.config import TrainConfig
from backend.training.runfile import load_config, read_options, render
from conftest import EXAMPLES

ROOT = EXAMPLES.parents[1]
CONFIGS = sorted((ROOT / "examples" / "configs").glob("*.yaml"))


def _file(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "name,text",
    [
        ("run.yaml", "data: a.jsonl\nepochs: 2\nlearning_rate: 5e-4\nkeep_best: no\nrun_name: r1\n"),
        ("run.json", '{"data": ["a.jsonl"], "epochs": 2, "learning_rate": 5e-4, "keep_best": false, "run_name": "r1"}'),
    ],
)
def test_a_run_file_sets_options_and_the_flags_given_replace_them(tmp_path, name, text):
    path = _file(tmp_path, text, name)
    config = load_config(path)
    assert config == TrainConfig(data=["a.jsonl"], epochs=2, learning_rate=5e-4, keep_best=False, run_name="r1")
    assert isinstance(config.learning_rate, float)  # 5e-4 is a number in YAML too, as in JSON
    overridden = load_config(path, overrides={"epochs": 1.0, "data": ["b.jsonl"], "lora_r": 8})
    assert (overridden.epochs, overridden.data, overridden.lora_r, overridden.run_name) == (1.0, ["b.jsonl"], 8, "r1")


def test_an_unknown_key_is_refused_with_the_closest_option_and_the_file(tmp_path):
    path = _file(tmp_path, "data: a.jsonl\nepochz: 3\n")
    with pytest.raises(InvalidRequest) as error:
        load_config(path)
    assert str(error.value) == f"{path}: unknown training option(s) ['epochz'] ('epochz': did you mean 'epochs'?)"
    far = _file(tmp_path, '{"data": "a.jsonl", "zzz": 1}', "run.json")
    with pytest.raises(
        InvalidRequest, match=r"run\.json: unknown training option\(s\) \['zzz'\]; known: \['augment', 'batch_size'"
    ):
        load_config(far)


@pytest.mark.parametrize(
    "text,message",
    [
        ("epochs: abc", "epochs: got 'abc' (str), expected a number"),
        ("lora_r: 8.5", "lora_r: got 8.5 (float), expected a whole number"),
        ("quantize: off", "quantize: got False (bool), expected a string"),  # YAML 1.1: off is false
        ("keep_best: maybe", "keep_best: got 'maybe' (str), expected true or false"),
        ("seed: [1]", "seed: got [1] (list), expected a whole number"),
        ("lora_r: 0", "lora_r: got 0, expected from 1 to 1024"),
        ("precision: fp16", "precision: got 'fp16', expected one of ['auto', 'bf16', 'fp32']"),
    ],
)
def test_a_wrong_value_names_the_file_the_key_and_what_it_expects(tmp_path, text, message):
    path = _file(tmp_path, "data: a.jsonl\n" + text + "\n")
    with pytest.raises(InvalidRequest) as error:
        load_config(path)
    assert str(error.value) == f"{path}: {message}"


def test_a_problem_of_a_flag_given_is_not_blamed_on_the_file(tmp_path):
    path = _file(tmp_path, "data: a.jsonl\nbatch_size: 4\n")
    with pytest.raises(InvalidRequest) as error:
        load_config(path, overrides={"grad_accum": 3})
    assert str(error.value) == "grad_accum: got 3, expected at least 1 and a divisor of batch_size (4)"


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("run.yaml", "data: [a.jsonl\n", r"run\.yaml:2: not valid YAML \(expected ',' or '\]'"),
        (
            "run.yaml",
            "data: a.jsonl\nepochs: 2\nepochs: 3\n",
            r"run\.yaml:3: not valid YAML \(key 'epochs' is given twice\)",
        ),
        ("run.json", '{"data": "a.jsonl", "epochs": 2, "epochs": 3}', r"run\.json: key 'epochs' is given twice"),
        ("run.json", '{"data": "a.jsonl",\n "epochs": }', r"run\.json:2: not valid JSON \(Expecting value\)"),
        ("run.yaml", "- data: a.jsonl\n", r"run\.yaml: got list, expected a mapping of training options"),
        ("run.yaml", "1: a\n", r"run\.yaml: key 1 is no option name"),
        ("run.yaml", "", r"run\.yaml: no training data: set data: \[FILE, \.\.\.\] in it, or give --data FILE"),
    ],
)
def test_a_file_that_is_no_run_file_says_where(tmp_path, name, text, message):
    with pytest.raises(InvalidRequest, match=message):
        load_config(_file(tmp_path, text, name))


def test_the_written_run_file_reads_back_as_the_same_config(tmp_path):
    config = TrainConfig(
        data=["a b.jsonl", "c: d.jsonl"],
        schema="schema.json",
        learning_rate=1e-5,
        epochs=0.25,
        keep_best=False,
        target_modules="q_proj,v_proj",
        launcher="torchrun",
        nproc=2,
        batch_size=8,
        launcher_args="--nnodes 2 --rdzv-endpoint host0:29500",
        run_name="yes",  # a word YAML 1.1 would read as true
    )
    text = render(config)
    assert "# LoRA rank.\nlora_r: 16\n" in text  # each option under its help text
    assert TrainConfig.from_dict(read_options(_file(tmp_path, text))) == config


def test_only_the_flags_given_replace_the_files_keys(tmp_path):
    from backend.cli import _config_from_args, build_parser

    path = _file(tmp_path, "data: a.jsonl\nlora_r: 8\nkeep_best: false\ngroup_by_length: false\nepochs: 2\n")
    args = build_parser().parse_args(["train", "--config", str(path), "--keep-best", "--epochs", "0.5"])
    config = _config_from_args(args)
    assert (config.keep_best, config.epochs) == (True, 0.5)  # given: replaced
    assert (config.lora_r, config.group_by_length, config.data) == (8, False, ["a.jsonl"])  # not given: the file's


def test_cli_refuses_config_with_resume_and_a_missing_file(tmp_path, capsys):
    path = _file(tmp_path, "data: a.jsonl\n")
    assert cli_main(["train", "--config", str(path), "--resume", str(tmp_path)]) == 2
    assert "give --config FILE or --resume RUN_DIR, not both" in capsys.readouterr().err
    assert cli_main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert cli_main(["train", "--config", str(_file(tmp_path, "data: a.jsonl\nlr: 1\n"))]) == 2
    assert "unknown training option(s) ['lr']" in capsys.readouterr().err


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_each_example_config_validates_and_explains_each_key(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # paths in a run file are read from where the command runs: the repository here
    config = load_config(path)
    assert all(Path(d).is_file() for d in config.data), config.data
    lines = path.read_text().splitlines()
    keys = [i for i, line in enumerate(lines) if re.match(r"^\w+:", line)]
    assert keys and all("#" in lines[i] or lines[i - 1].startswith("#") for i in keys), "a key without a comment"


def test_the_example_configs_cover_the_documented_cases():
    names = {p.name for p in CONFIGS}
    assert names == {"receipts-smollm2.yaml", "receipts-gemma3.yaml", "dolly-instructions.yaml", "qlora-gpu.yaml"}
    qlora = read_options(ROOT / "examples" / "configs" / "qlora-gpu.yaml")
    assert (qlora["quantize"], qlora["device"]) == ("4bit", "cuda")


def test_a_run_folder_config_yaml_reruns_the_run(tiny_model, tmp_path, capsys):
    """Trains twice on the tiny model: from a run file with a flag over it, then from the first run's
    config.yaml; each run folder's config.yaml reads back as the run's resolved config."""
    runs = tmp_path / "runs"
    run_file = _file(
        tmp_path,
        f"data: {EXAMPLES / 'chat.jsonl'}\nmodel: {tiny_model}\noutput_dir: {runs}\nrun_name: first\n"
        "max_steps: 50\nbatch_size: 2\nprecision: fp32\nval_fraction: 0\nsave_every: 0\nreport_to: none\nthreads: 1\n",
    )
    assert cli_main(["train", "--config", str(run_file), "--max-steps", "1", "--lora-r", "4", "--quiet"]) == 0
    first = runs / "first"
    resolved = TrainConfig.from_dict(read_options(first / "config.yaml"))
    assert resolved == TrainConfig.from_dict(json.loads((first / "config.json").read_text()))
    assert (resolved.max_steps, resolved.lora_r, resolved.run_name, resolved.eval_metric) == (1, 4, "first", "auto")
    assert json.loads((first / "summary.json").read_text())["steps"] == 1

    assert cli_main(["train", "--config", str(first / "config.yaml")]) == 2  # the folder holds a run
    assert "already holds a run" in capsys.readouterr().err
    assert cli_main(["train", "--config", str(first / "config.yaml"), "--run-name", "again", "--quiet"]) == 0
    again = TrainConfig.from_dict(read_options(runs / "again" / "config.yaml"))
    assert again == TrainConfig(**{**resolved.to_dict(), "run_name": "again"})
    assert json.loads((runs / "again" / "summary.json").read_text())["steps"] == 1
