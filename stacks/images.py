"""SageMaker container images, resolved offline at synth time for the stack's region.

One container serves every stage (processing, tuning trials, refit, evaluation, hosting): the
SageMaker XGBoost framework container in script mode. Its version is pinned together with the
local ``xgboost-cpu`` in requirements.txt (tests/infra/test_versions.py fails if they drift), so
a model trained or evaluated locally loads the same way in AWS.
"""

from __future__ import annotations

from functools import cache

#: SageMaker XGBoost framework container; ``<xgboost version>-<container revision>``.
XGBOOST_CONTAINER_VERSION = "3.2-0"


def xgboost_version() -> str:
    """The xgboost library version inside the container (``3.2-0`` -> ``3.2``)."""
    return XGBOOST_CONTAINER_VERSION.split("-")[0]


@cache
def xgboost_image_uri(region: str) -> str:
    """ECR URI of the pinned XGBoost container in ``region``.

    Uses sagemaker-core's bundled image registry (no network, no credentials). Raises ``ValueError``
    with the SDK's message when the container is not offered in that region.
    """
    from sagemaker.core import image_uris  # heavy import: only when a stack needs it

    return image_uris.retrieve("xgboost", region=region, version=XGBOOST_CONTAINER_VERSION)


def ecr_repository_arn(image_uri: str) -> str:
    """ARN of the ECR repository an image URI points into (for a least-privilege pull policy)."""
    registry, _, rest = image_uri.partition("/")
    account, _, _, region = registry.split(".")[:4]
    repository = rest.split(":")[0].split("@")[0]
    partition = "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"
    return f"arn:{partition}:ecr:{region}:{account}:repository/{repository}"
