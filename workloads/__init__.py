"""Workloads: PyTorch models, data set loaders, workload YAML specs and trained checkpoints.

The layer between the engine (:mod:`sim`, no torch) and the mappers: it says *what* runs on
the accelerator. The public API:

- :data:`MODELS`, :func:`build_model`: hand-written models (``digits_cnn``, ``lenet5``,
  ``resnet20``, ``vgg_small``) built only from Conv2d/Linear/BatchNorm2d/ReLU/pooling.
- :data:`DATASETS`, :func:`load_dataset`, :func:`locate_dataset`: normalized tensors from the
  standard file formats, found via ``data_dir`` or ``$IMCSIM_DATA``.
- :func:`workloads.download.download`: fetch MNIST, Fashion-MNIST or CIFAR-10 with checksum
  verification.
- :class:`Workload`, :func:`load_workload`: a validated workload YAML.
- :func:`workloads.train.train`, :func:`workloads.train.evaluate`: deterministic float
  training with a provenance manifest.

``download`` and ``train`` are deliberately not re-exported: a function of the same name as its
submodule would shadow the module as an attribute of the package.
"""

from workloads.datasets import (
    DATASETS,
    DatasetInfo,
    DataSource,
    load_dataset,
    locate_dataset,
)
from workloads.models import MODELS, build_model
from workloads.spec import Bits, TrainSettings, Workload, builtin_workloads, load_workload

__all__ = [
    "DATASETS",
    "MODELS",
    "Bits",
    "DataSource",
    "DatasetInfo",
    "TrainSettings",
    "Workload",
    "build_model",
    "builtin_workloads",
    "load_dataset",
    "load_workload",
    "locate_dataset",
]
