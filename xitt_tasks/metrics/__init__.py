"""seqio metric functions `fn(targets, predictions) -> dict[str, float]`, values in percent.

Each returns the number the benchmark's official scorer prints for the same predictions; the
module docstrings say which scorer and spell out its quirks.
"""

from xitt_tasks.metrics.classification import accuracy, rank_classification_accuracy
from xitt_tasks.metrics.mlqa import mlqa_metrics
from xitt_tasks.metrics.retrieval import (
    lareqa_map_at_20,
    map_at_k,
    mewslix_map_at_20,
    tatoeba_accuracy,
)
from xitt_tasks.metrics.squad import squad_v1, squad_v2_metrics
from xitt_tasks.metrics.tagging import ner_metrics, pos_metrics, token_accuracy

__all__ = [
    "accuracy",
    "lareqa_map_at_20",
    "map_at_k",
    "mewslix_map_at_20",
    "mlqa_metrics",
    "ner_metrics",
    "pos_metrics",
    "rank_classification_accuracy",
    "squad_v1",
    "squad_v2_metrics",
    "tatoeba_accuracy",
    "token_accuracy",
]
