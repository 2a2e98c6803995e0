"""The deploy benchmark at a tiny size: every phase and ratio lands in its JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from backend.config import PROJECT_ROOT
from tests.bench.datagen import messages, zstd_ratio
from tests.bench.deploy import PHASES

pytestmark = pytest.mark.slow


def test_generated_chat_compresses_like_real_chat() -> None:
    sample = "\n".join(messages(5000)).encode()
    assert 3.0 <= zstd_ratio(sample) <= 4.5
    assert messages(50) == messages(50)  # seeded


@pytest.mark.skipif(not shutil.which("mydumper"), reason="mydumper not installed (apt-get install mydumper)")
def test_benchmark_json_has_every_phase(tmp_path) -> None:
    report = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, "-m", "tests.bench.deploy", "--sizes", "1000,2000", "--repeats", "1", "--json", str(report)],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    results = json.loads(report.read_text())
    assert results["load_start"] and results["load_end"]
    assert list(results["sizes"]) == ["1000", "2000"]
    for size in results["sizes"].values():
        assert size["dataset"]["dump_zstd1_ratio"] > 2 and size["dataset"]["flush_seconds"] >= 0
        for phase in PHASES:
            assert size[phase]["ours"] > 0 and size[phase]["raw"] > 0 and size[phase]["ours_max_rss_mb"] > 0
            assert size[phase]["ours_vs_raw"] > 0 and len(size[phase]["ours_runs"]) == 1
        assert size["full backup"]["mydumper"] > 0 and size["restore"]["mydumper"] > 0
        assert size["full backup"]["inserts_during_ours"]["inserts"] > 0
        drop = size["drop-column deploy"]
        assert drop["kept_rows"] > 0 and 0 < drop["kept_share_of_database"] < 1
        assert size["additive deploy"]["full_backup_deploy_backup_step"] > 0
    assert set(results["growth"]["1000->2000"]) == set(PHASES)


@pytest.mark.skipif(not shutil.which("pt-online-schema-change"), reason="percona-toolkit not installed")
def test_online_benchmark_json_has_both_paths(tmp_path) -> None:
    report = tmp_path / "online.json"
    subprocess.run(
        [sys.executable, "-m", "tests.bench.online", "--rows", "3000", "--repeats", "1", "--json", str(report)],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    results = json.loads(report.read_text())
    assert results["load_start"] and results["load_end"] and results["dataset"]["rows"] == 3000
    for path in ("direct", "online"):
        figures = results[path]
        assert figures["deploy_seconds"] > figures["upgrade_seconds"] > 0
        assert figures["writer_inserts"] > 20 and 0 < figures["writer_p50_ms"] <= figures["writer_max_ms"]
    online = results["online"]
    assert online["copy_seconds"] > 0 and online["cut_over_seconds"] > 0 and online["copy_bytes_per_second"] > 0
    assert results["online_vs_direct"]["deploy"] > 0 and set(results["goals"]) >= {"time_factor_met"}
    run = results["runs"]["online"][0]
    assert "copy" in run["writer_by_phase"] and isinstance(run["writer_waits_seen"], dict)
    assert any("swapped in" in line for _, line in run["output"])
    assert not any("runs online" in line for _, line in results["runs"]["direct"][0]["output"])
