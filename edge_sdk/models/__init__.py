"""Models: cards, the zoo of named models, and where their files live."""

from edge_sdk.models.card import ModelCard
from edge_sdk.models.zoo import ZOO, ZooEntry

__all__ = ["ZOO", "ModelCard", "ZooEntry"]
