"""Model definitions: the shared LM and one token mixer per architecture."""

from runners.models.lm import MIXERS, LanguageModel

__all__ = ["MIXERS", "LanguageModel"]
