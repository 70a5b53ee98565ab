"""Model -> hardware: batch-norm folding, quantization, and the torch bridge that runs every
Conv2d and Linear matrix product of a ``torch.nn.Module`` through the crossbar kernels."""

from mappers.torch_bridge import MappedModel, QuantRecipe, fold_batchnorm, map_model

__all__ = ["MappedModel", "QuantRecipe", "fold_batchnorm", "map_model"]
