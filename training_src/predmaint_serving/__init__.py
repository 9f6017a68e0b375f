"""The serving code: what the endpoint runs behind ``training_src/inference.py`` (the hooks module).

One module per concern; a change of the request format touches ``codec.py`` (and, for window
profiles, the compiled reader ``request.c``, which ``reader.py`` checks against ``codec.py`` at
every load):

- ``codec.py``      the request/response codec: media types, limits, JSON, validation, errors
- ``model.py``      the loaded model (``load`` is ``model_fn``) and the fields a request must carry
- ``predictors.py`` predictions (compiled and NumPy walkers of xgboost trees, else the candidate's own) and explanations
- ``reader.py``     the compiled request reader (``request.c`` + ``features.c``) and its self-check
- ``native.py``     building and loading the C libraries (``forest.c``; ``request.c`` + ``features.c``)
- ``handler.py``    the whole request (``handle``) and the SageMaker container's three hooks

The package ships inside the model artifact's ``code/training_src/`` (train.py copies it), where
``code/`` is on ``sys.path``: there as in the repository it is ``training_src.predmaint_serving``
beside ``training_src.features``.
"""

from training_src import features as F

__all__ = ["F"]
