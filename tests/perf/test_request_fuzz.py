"""request.c reads untrusted bytes: fuzz it under AddressSanitizer and UBSan (aborts on any error).

Checked to fail: with the length check removed from request.c's ``literal()`` (a 1-4 byte read past
a truncated ``fals``), this test fails within seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from training_src.predmaint_serving import native

HERE = Path(__file__).resolve().parent


def _asan_runtime(cc: str) -> str | None:
    out = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return out if out and Path(out).is_file() else None


def test_request_reader_survives_fuzzing_under_sanitizers(fd001_perf, tmp_path):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    runtime = _asan_runtime(cc) if cc else None
    if runtime is None:
        pytest.skip("no C compiler with AddressSanitizer here")
    lib = tmp_path / "request-asan.so"
    sources = [str(native.HERE / s) for s in native.LIBRARIES["request"]]  # the reader + the feature kernel
    subprocess.run([cc, "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                    "-fno-omit-frame-pointer", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(lib), *sources, "-lm"], check=True, capture_output=True, timeout=120)
    spec = tmp_path / "feature_spec.json"
    spec.write_text(fd001_perf["spec"].to_json())
    # PYTHONMALLOC=malloc: every bytes object is its own heap block, so a read past a body's end
    # hits a redzone (inside pymalloc's arenas it would go unnoticed); Python itself leaks at exit
    env = {**os.environ, "LD_PRELOAD": runtime, "PYTHONMALLOC": "malloc",
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1"}
    proc = subprocess.run([sys.executable, str(HERE / "fuzz_request_driver.py"), str(lib), str(spec), "15"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "mutations" in proc.stdout
    assert "runtime error" not in proc.stderr  # UBSan reports
