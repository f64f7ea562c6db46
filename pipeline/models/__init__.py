"""Depth models behind one interface (`base.DepthModel`), found through the registry
(`registry.register`): training, evaluation and prediction never branch on the architecture."""
from pipeline.models.base import IMAGENET_MEAN, IMAGENET_STD, DepthModel
from pipeline.models.registry import build_from_arch, build_model, config_for, model_config, model_names, register

__all__ = ["DepthModel", "IMAGENET_MEAN", "IMAGENET_STD", "build_from_arch", "build_model", "config_for",
           "model_config", "model_names", "register"]
