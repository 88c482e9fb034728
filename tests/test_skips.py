"""The CI's skip rule (tests/conftest.py, EDGELITE_REQUIRE_ALL=1 in .ci/run): a test that needs only the shared
data and edgelite's extras must not skip; a thing no extra installs, or shared data where there is none, may."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROBE = '''
import pytest
from conftest import shared, skip_external

def test_needs_an_extra():
    pytest.importorskip("no_such_extra_module")

def test_needs_shared_data():
    shared("data/no-such-file")

def test_needs_a_system_tool():
    skip_external("frobnicator is not installed")
'''


def run_probe(tmp_path: Path, shared_dir: Path, require: bool, only: str = "") -> subprocess.CompletedProcess:
    shutil.copyfile(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "EDGELITE_SHARED": str(shared_dir), "EDGELITE_REQUIRE_ALL": "1" if require else ""}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", only or "test",
                           str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_a_skip_ci_does_not_allow_fails_the_run_and_is_named(tmp_path):
    (tmp_path / "shared").mkdir()
    done = run_probe(tmp_path, tmp_path / "shared", require=True)
    assert done.returncode == 1, done.stdout
    unexpected = done.stdout.split("does not allow")[1].split("short test summary")[0]
    assert "test_needs_an_extra: could not import 'no_such_extra_module'" in unexpected
    assert "test_needs_shared_data: shared data not available" in unexpected  # the folder exists: a file is missing
    assert "frobnicator" not in unexpected and "3 skipped" in done.stdout


def test_allowed_skips_and_runs_without_the_rule_pass(tmp_path):
    assert run_probe(tmp_path, tmp_path / "absent", require=True, only="shared or system").returncode == 0
    assert run_probe(tmp_path, tmp_path / "absent", require=False).returncode == 0
