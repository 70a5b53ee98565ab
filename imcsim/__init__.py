"""imcsim's public Python API: simulate your own PyTorch model on an IMC architecture.

::

    import imcsim

    result = imcsim.simulate(model, "isaac_32nm", (x_test, y_test), x_train[:256],
                             weight_bits=8, activation_bits=8, samples=100)
    print(imcsim.format_result(result))      # accuracy, events, energy, latency, area
    imcsim.save(result, "results/my_model")  # result.json, as `imcsim run` writes it

- :func:`simulate`: the bit-true run of ``imcsim run`` on an ``nn.Module`` and data in memory;
  returns the same :class:`Result`.
- :func:`estimate`: the analytical mode (event counts from input statistics, no bit-true pass).
- :func:`map_model`: the model with its Conv2d/Linear products on simulated crossbars, as a
  module you can call.
- :func:`simulate_workload`: ``imcsim run`` itself, from a workload YAML;
  :func:`load_workload` reads one (its model, preprocessed data and bits) for use here.

Data may be an ``(inputs, labels)`` pair of tensors (or numpy arrays), a ``Dataset`` of
``(input, label)`` items, or a ``DataLoader`` of ``(inputs, labels)`` batches; calibration
data may also be inputs alone (a tensor, a list of batches). A mistake in an argument raises
:class:`UserError` with one clear message, as the command line does. See ``docs/api.md``.
"""

from analysis.run import LayerResult, Result, format_result, save
from analysis.run import simulate as simulate_workload
from imcsim.api import as_inputs, as_labelled, estimate, load_arch, map_model, simulate
from mappers.torch_bridge import MappedModel
from sim import __version__
from sim.config import Arch
from sim.errors import ConfigError, DataError, MappingError, UserError
from workloads.spec import Workload, load_workload

__all__ = [
    "Arch",
    "ConfigError",
    "DataError",
    "LayerResult",
    "MappedModel",
    "MappingError",
    "Result",
    "UserError",
    "Workload",
    "__version__",
    "as_inputs",
    "as_labelled",
    "estimate",
    "format_result",
    "load_arch",
    "load_workload",
    "map_model",
    "save",
    "simulate",
    "simulate_workload",
]
