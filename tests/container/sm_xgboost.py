"""The SageMaker XGBoost container's script-mode entry paths, rebuilt from sagemaker-containers.

Runs in the container's Python environment (``.venv-container``, ``make container-setup``), never in
the project's. aws/sagemaker-xgboost-container is not on PyPI, so its two entry modules are rebuilt
here from the library they are made of, call for call (read against the repository's master):

- serving (``sagemaker_xgboost_container/serving.py``): ``serving_entrypoint`` ->
  ``sagemaker_containers._server.start(module_app)``, which installs the user module
  (``_modules.import_module(env.module_dir, env.module_name)``: copy the submit directory to
  ``<base>/code``, write a setup.py, ``pip install .``, import it) and execs gunicorn with gevent
  workers and ``--pythonpath sys.path + [code_dir]``; each worker's ``main`` imports the module,
  builds a ``_transformer.Transformer`` from its hooks (refused when it defines ``transform_fn``
  together with ``input_fn``/``predict_fn``/``output_fn``: the container's
  ``_user_module_transformer`` raises, and ``Transformer.__init__`` checks the same condition) and
  serves ``Transformer.transform`` from a ``_worker.Worker`` Flask app.
  Differences, all outside the code under test: gunicorn binds 127.0.0.1 instead of 0.0.0.0 and
  no nginx runs in front (``SAGEMAKER_USE_NGINX=false``, a supported setting); the container's
  default hooks (used only for hooks a module lacks) are the library's.
- training (``sagemaker_xgboost_container/training.py``, script mode): ``framework.training_env()``
  then ``framework.modules.run_module(env.module_dir, env.to_cmd_args(), env.to_env_vars(),
  env.module_name)``: unpack the submit directory's sourcedir.tar.gz into ``<base>/code``,
  ``pip install .``, ``python -m <program>`` with the hyperparameters as ``--name value``.

Commands (paths come from the environment, as in the container: ``SAGEMAKER_BASE_DIR``,
``SAGEMAKER_PROGRAM``, ``SAGEMAKER_SUBMIT_DIRECTORY``, ...)::

    python sm_xgboost.py serve PORT WORKERS
    python sm_xgboost.py train
    python sm_xgboost.py probe [SECONDS]   # a worker's view, in-process: checks and timings as JSON
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path

from sagemaker_containers import _env, _modules
from sagemaker_containers.beta import framework
from sagemaker_containers.beta.framework import env, transformer, worker

app = None


def transformer_for(module: object) -> transformer.Transformer:
    """``serving._user_module_transformer``: the module's hooks in the library's Transformer."""
    return transformer.Transformer(model_fn=getattr(module, "model_fn", None),
                                   input_fn=getattr(module, "input_fn", None),
                                   predict_fn=getattr(module, "predict_fn", None),
                                   output_fn=getattr(module, "output_fn", None),
                                   transform_fn=getattr(module, "transform_fn", None))


def main(environ: dict, start_response: object) -> object:
    """``serving.main``: the WSGI app each gunicorn worker runs (built on its first request)."""
    global app
    if app is None:
        serving_env = env.ServingEnv()
        user_module = importlib.import_module(serving_env.module_name)
        user_module_transformer = transformer_for(user_module)
        user_module_transformer.initialize()
        app = worker.Worker(transform_fn=user_module_transformer.transform, module_name=serving_env.module_name)
    return app(environ, start_response)


def serve(port: str, workers: str) -> None:
    """``_server.start("sm_xgboost:main")`` without nginx, bound to loopback."""
    serving_env = env.ServingEnv()
    _modules.import_module(serving_env.module_dir, serving_env.module_name)
    pythonpath = ",".join([*sys.path, _env.code_dir])
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    os.execv(gunicorn, [gunicorn, "--timeout", str(serving_env.model_server_timeout), "-k", "gevent",
                        "--pythonpath", pythonpath, "-b", f"127.0.0.1:{port}", "--worker-connections",
                        str(1000 * int(workers)), "-w", workers, "--log-level", "info", "sm_xgboost:main"])


def train() -> None:
    """``training.main`` in script mode."""
    training_env = framework.training_env()
    framework.modules.run_module(training_env.module_dir, training_env.to_cmd_args(), training_env.to_env_vars(),
                                 training_env.module_name, capture_error=False)


def probe(seconds: float = 0.0) -> dict:
    """What a worker does (the code directory first on sys.path, the module imported, the
    Transformer built from its hooks), then requests through the library's Worker (Flask test
    client): which body type the hooks got, whether the compiled reader answered, and (``seconds``
    > 0) the in-process latency of ``Transformer.transform`` for the body ``PROBE_BODY`` (or the file
    ``PROBE_BODY_FILE``)."""
    import numpy as np
    from sagemaker_containers import _files
    from werkzeug.test import EnvironBuilder

    serving_env = env.ServingEnv()
    _files.download_and_extract(serving_env.module_dir, _env.code_dir)  # as _server.start does first
    sys.path.insert(0, _env.code_dir)  # gunicorn's --pythonpath, for the workers
    module = importlib.import_module(serving_env.module_name)
    t = transformer_for(module)
    t.initialize()
    model = t._model  # the Transformer's loaded model (no public accessor)
    seen: dict = {"body_types": [], "reader_answers": 0}
    if model.reader is not None:
        read = model.reader.read

        def counting_read(body: bytes) -> object:
            out = read(body)
            seen["reader_answers"] += out is not None
            return out

        model.reader.read = counting_read
    accept = module.input_fn

    def recording_input_fn(body: object, content_type: str) -> object:
        seen["body_types"].append(type(body).__name__)
        return accept(body, content_type)

    recording = transformer.Transformer(model_fn=lambda _d: model, input_fn=recording_input_fn,
                                        predict_fn=module.predict_fn, output_fn=module.output_fn)
    recording.initialize()
    app = worker.Worker(transform_fn=recording.transform, module_name=serving_env.module_name)
    # the body itself, or (large bodies: an environment variable is limited to 128 KiB) a file holding it
    body = Path(os.environ["PROBE_BODY_FILE"]).read_bytes() if "PROBE_BODY_FILE" in os.environ \
        else os.environ["PROBE_BODY"].encode()
    client = app.test_client()
    responses = [client.post("/invocations", data=body, content_type=ctype)
                 for ctype in ("application/json", "application/json; charset=utf-8")]
    out = {"python": sys.version.split()[0], "module_file": module.__file__, "reader": model.reader is not None,
           "compiled_forest": model.compiled is not None, "statuses": [r.status_code for r in responses],
           "answers": [r.get_json() for r in responses], **seen}
    if seconds > 0:
        def once() -> float:
            environ = EnvironBuilder(method="POST", path="/invocations", data=body,
                                     content_type="application/json", headers={"Accept": "application/json"}
                                     ).get_environ()
            start = time.perf_counter()
            with app.request_context(environ):
                response = t.transform()
            elapsed = time.perf_counter() - start
            assert response.status_code == 200
            return elapsed

        text = body.decode()

        def hooks() -> float:  # our three hooks alone on the str body the container hands over
            start = time.perf_counter()
            module.output_fn(module.predict_fn(module.input_fn(text, "application/json"), model), "application/json")
            return time.perf_counter() - start

        for name, fn in (("transform_ms", once), ("hooks_ms", hooks)):
            for _ in range(50):
                fn()
            times, stop = [], time.perf_counter() + seconds
            while time.perf_counter() < stop and len(times) < 50000:
                times.append(fn())
            ms = np.asarray(times) * 1e3
            out[name] = {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "n": len(times)}
    return out


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "serve":
        serve(*args)
    elif command == "train":
        train()
    elif command == "probe":
        print(json.dumps(probe(float(args[0]) if args else 0.0)))
    else:
        sys.exit(f"unknown command {command!r}")
