"""The hooks module: what the SageMaker XGBoost container loads (``SAGEMAKER_PROGRAM=inference.py``).

The container's script-mode serving (sagemaker-containers) calls ``model_fn`` once per worker and
``input_fn -> predict_fn -> output_fn`` per request; ``output_fn`` answers refusals with their
4xx status (why these three and no ``transform_fn``: ``predmaint_serving/handler.py``). The local server
(predmaint/server.py) calls ``handle``, the whole request in one call, which the container ignores.
The code lives in the ``predmaint_serving`` package beside this file (the artifact's ``code/`` holds
both; a distinctive name, since ``code/`` is first on ``sys.path`` in the container).
"""

try:  # repository: training_src.inference
    from .predmaint_serving import handler as _handler
    from .predmaint_serving import model as _model
except ImportError:  # the artifact's code/ on sys.path (SageMaker container, local server)
    from predmaint_serving import handler as _handler
    from predmaint_serving import model as _model

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
