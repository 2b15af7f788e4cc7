"""examples/train_pair_in_one_session.sh: a rerun skips finished stages and resumes the interrupted one."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_pair_in_one_session.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_rerun_skips_finished_stages_and_resumes_the_interrupted_one(tmp_path):
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "fake-agegender"  # records each call instead of training
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\n')
    fake.chmod(0o755)
    runs = tmp_path / "runs"
    (runs / "pair-xception").mkdir(parents=True)
    (runs / "pair-xception" / "metrics.json").write_text("{}")  # finished
    (runs / "pair-xception-stage2").mkdir()
    (runs / "pair-xception-stage2" / "config.json").write_text("{}")  # interrupted

    subprocess.run(["bash", str(SCRIPT), "DATA", "W.h5", str(runs)], check=True, capture_output=True,
                   env={**os.environ, "AGEGENDER": str(fake)})

    lines = calls.read_text().splitlines()
    trains = [line for line in lines if line.startswith("train")]
    assert trains[0] == f"train --resume --out {runs}/pair-xception-stage2"
    assert not any(line.endswith(f"--out {runs}/pair-xception") for line in trains)
    assert trains[1].endswith(f"--data DATA --protocol holdout --out {runs}/pair-dlib-probe")
    assert f"--init-from {runs}/pair-dlib-probe" in trains[2] and "dropped_blocks=13" in trains[2]
    assert [line.split()[0] for line in lines[3:]] == ["export", "export", "average", "calibrate"]
    assert "--age-weights 0.35 0.65" in lines[5]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_without_arguments_it_says_how_to_call_it(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "usage: train_pair_in_one_session.sh DATA XCEPTION_WEIGHTS" in result.stderr
