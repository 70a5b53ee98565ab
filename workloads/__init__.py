"""Workloads: PyTorch models, data set loaders, workload YAML specs and trained checkpoints.

The layer between the engine (:mod:`sim`, no torch) and the mappers: it says *what* runs on
the accelerator. The public API:

- :data:`MODELS`, :func:`build_model`: hand-written models (``digits_cnn``, ``lenet5``,
  ``resnet20``, ``vgg_small``) built only from Conv2d/Linear/BatchNorm2d/ReLU/pooling.
- :data:`DATASETS`, :func:`load_dataset`, :func:`locate_dataset`: normalized tensors from the
  standard file formats, found via ``data_dir`` or ``$IMCSIM_DATA``.
- :func:`download`: fetch MNIST, Fashion-MNIST or CIFAR-10 with checksum verification.
- :class:`Workload`, :func:`load_workload`: a validated workload YAML.
- :func:`train`, :func:`evaluate`: deterministic float training with a provenance manifest.

Note that the functions ``download`` and ``train`` re-exported here shadow the submodules of
the same name as attributes of the package; reach the modules' other names with
``from workloads.download import SOURCES`` (which goes through ``sys.modules``).
"""

from workloads.datasets import (
    DATASETS,
    DatasetInfo,
    DataSource,
    load_dataset,
    locate_dataset,
)
from workloads.download import download
from workloads.models import MODELS, build_model
from workloads.spec import Bits, TrainSettings, Workload, builtin_workloads, load_workload
from workloads.train import evaluate, train

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
    "download",
    "evaluate",
    "load_dataset",
    "load_workload",
    "locate_dataset",
    "train",
]
