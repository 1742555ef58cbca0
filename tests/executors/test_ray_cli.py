"""The command line's --ray: the same output as one process, the executor in the summary, the
workers' options checked before any model loads, and Ctrl-C leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interp.cli.app import main

PROMPTS = [
    "The earth revolves around the sun",
    "The moon revolves around the earth",
    "Attention heads copy tokens",
    "Induction heads complete patterns",
]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    file = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    file.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return file


@pytest.mark.ray
def test_generate_and_sweep_on_ray_write_what_one_process_writes(
    tiny_folder, prompts, tmp_path, capsys
):
    common = ["--model", str(tiny_folder), "--prompts", str(prompts), "--max-new-tokens", "4"]
    assert main(["generate", *common, "--out", str(tmp_path / "one")]) == 0
    assert (
        main(["generate", *common, "--out", str(tmp_path / "ray"), "--ray", "--workers", "2"]) == 0
    )
    assert "on Ray: 2 workers on 1 node(s)" in capsys.readouterr().out
    one = json.loads((tmp_path / "one" / "summary.json").read_text())["rows"]
    ray = json.loads((tmp_path / "ray" / "summary.json").read_text())["rows"]
    assert [r["token_ids"] for r in one] == [r["token_ids"] for r in ray]
    record = json.loads(ray[0]["provenance"]["executor"])
    assert record["kind"] == "ray" and record["workers"] == 2 and record["processes"] == 2
    assert "executor" not in one[0]["provenance"]
    assert main(["sweep", str(tmp_path / "one")]) == 0
    assert main(["sweep", str(tmp_path / "ray"), "--ray"]) == 0
    a = json.loads((tmp_path / "one" / "summary.json").read_text())["sweep"]
    b = json.loads((tmp_path / "ray" / "summary.json").read_text())["sweep"]
    assert a["top_heads"] == b["top_heads"] and b["executor"]["nodes"] == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--workers", "3"], "--workers goes with --ray"),
        (["--ray", "--workers", "0"], "workers must be an integer >= 1"),
        (["--ray", "--cpus-per-worker", "0"], "cpus_per_worker must be more than 0"),
        (["--ray", "nowhere"], "a Ray address is 'auto'"),
    ],
)
def test_the_workers_options_are_checked_before_the_model_loads(argv, message, prompts, capsys):
    argv = ["generate", "--model", "./no-such-model", "--prompts", str(prompts), *argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_ray_spreads_a_set_not_one_prompt(capsys):
    assert main(["generate", "hello", "--model", "./no-such-model", "--ray"]) == 2
    assert "--ray spreads a set's rows: give --prompts FILE" in capsys.readouterr().err


@pytest.mark.ray
def test_ctrl_c_stops_the_run_writes_nothing_and_shuts_the_cluster_down(tiny_folder, tmp_path):
    out, many = tmp_path / "set", tmp_path / "many.txt"
    many.write_text("\n".join(PROMPTS * 50))  # 200 rows: the run outlasts the interrupt
    argv = ["generate", "--model", str(tiny_folder), "--prompts", str(many), "--out", str(out)]
    argv += ["--max-new-tokens", "70", "--no-stop-at-eos", "--batch-size", "1", "--ray"]
    interp_command = str(Path(sys.executable).parent / "interp")
    proc = subprocess.Popen(
        [interp_command, *argv],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(12)  # the cluster is up and the workers are loading or running
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interp: error: interrupted; nothing was written"
    assert not out.exists()
    deadline = time.monotonic() + 30  # the cluster's own processes end within seconds
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True)
        if not left.stdout.strip():
            break
        time.sleep(0.5)
    assert left.stdout.strip() == "", f"processes of the run still alive: {left.stdout}"
