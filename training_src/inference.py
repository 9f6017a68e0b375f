"""The hooks module: what the SageMaker XGBoost container serves (``SAGEMAKER_PROGRAM=inference.py``).

The container's script-mode serving (sagemaker-containers) calls ``model_fn`` once per worker and
``input_fn -> predict_fn -> output_fn`` per request; ``output_fn`` answers refusals with their
4xx status (why these three and no ``transform_fn``: ``predmaint_serving/handler.py``). The local server
(predmaint/server.py) calls ``handle``, the whole request in one call, which the container ignores.
The code lives in the ``predmaint_serving`` package beside this file. The artifact's ``code/`` holds
the ``training_src`` package (a distinctive name, since ``code/`` is first on ``sys.path`` in the
container) and a two-line ``inference.py`` that re-exports these hooks (train.py's ``write_model``).
"""

from training_src.predmaint_serving import handler as _handler
from training_src.predmaint_serving import model as _model

#: ``model_fn(model_dir) -> Model``
model_fn = _model.load
#: ``input_fn(request_body, request_content_type) -> bytes | Refusal``
input_fn = _handler.accept
#: ``predict_fn(input_data, model) -> response document | Refusal``
predict_fn = _handler.predict
#: ``output_fn(prediction, accept) -> (body, content type) | worker.Response`` (status of a refusal)
output_fn = _handler.respond
#: ``handle(model, body, content_type, accept, custom_attributes=None) -> (status, body, content type)``
handle = _handler.handle
