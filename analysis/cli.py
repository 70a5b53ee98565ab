"""The ``imcsim`` command line: thin subcommands over the same API the tests use.

A user's mistake (:class:`~sim.errors.UserError`: bad YAML, missing data, impossible mapping)
prints one clear message and exits non-zero (2), never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import yaml

from analysis.paths import ARCH_DIR, WORKLOAD_DIR, resolve
from sim.config.loader import read_yaml
from sim.errors import ConfigError, UserError


def _cmd_validate(args: argparse.Namespace) -> int:
    from sim.config import load_arch
    from sim.config.schema import columns_per_weight, input_steps, max_partial_sum

    path = resolve(args.arch, ARCH_DIR, "arch")
    try:
        arch = load_arch(path)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 2
    xb = arch.crossbar
    print(f"{path}: valid: {arch.name}, {arch.organization.crossbars} crossbars of "
          f"{xb.rows}x{xb.columns}{'+1' if xb.unit_column else ''}, {xb.cell.bits}-bit "
          f"{xb.cell.technology} cells, {arch.weights.bits}-bit {arch.weights.encoding} weights "
          f"in {columns_per_weight(arch.weights, xb.cell)} columns, "
          f"{input_steps(arch.inputs, xb.dac)} input steps, {xb.adc.bits}-bit ADC "
          f"(largest partial sum {max_partial_sum(arch)})")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from analysis.run import format_result, save, simulate

    arch = resolve(args.arch, ARCH_DIR, "arch")
    workload = resolve(args.workload, WORKLOAD_DIR, "workload")
    out = Path(args.out) if args.out else Path("results") / f"{arch.stem}__{workload.stem}"
    result = simulate(arch, workload, samples=args.samples, seed=args.seed,
                      data_dir=args.data_dir, batch_size=args.batch_size, out_dir=out,
                      progress=not args.quiet, pipelined=not args.layer_by_layer,
                      trace_layer=args.trace, allow_float_products=args.allow_float_products)
    print(format_result(result))
    path = save(result, out)
    print(f"\nwrote {path}")
    if args.report:
        from analysis.report import write_report

        print(f"wrote {write_report(path, fmt=args.report)}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from analysis.sweep import format_outcome, run_sweep
    from analysis.sweep_spec import load_sweep

    spec = load_sweep(args.spec)
    if args.data_dir and spec.data_dir is None:
        spec = dataclasses.replace(spec, data_dir=str(Path(args.data_dir).resolve()))
    outcome = run_sweep(spec, args.out, workers=args.workers, scheduler=args.scheduler,
                        progress=not args.quiet, command=" ".join(sys.argv))
    print(format_outcome(outcome, spec))
    return 1 if outcome.errors else 0


def _cmd_montecarlo(args: argparse.Namespace) -> int:
    from analysis.montecarlo import format_montecarlo, run_montecarlo

    arch = resolve(args.arch, ARCH_DIR, "arch")
    workload = resolve(args.workload, WORKLOAD_DIR, "workload")
    out = (Path(args.out) if args.out
           else Path("results") / f"montecarlo_{arch.stem}__{workload.stem}")
    report = run_montecarlo(arch, workload, chips=args.chips, samples=args.samples,
                            seed=args.seed, base_seed=args.base_seed, vary=args.vary,
                            batch_size=args.batch_size, data_dir=args.data_dir, out_dir=out,
                            workers=args.workers, scheduler=args.scheduler,
                            confidence=args.confidence, progress=not args.quiet,
                            command=" ".join(sys.argv))
    print(format_montecarlo(report))
    print(f"\nwrote {out / 'montecarlo.json'}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    path = write_report(args.result, fmt=args.format, out=args.out,
                        montecarlo_path=args.montecarlo)
    print(f"wrote {path}")
    return 0


def _add_executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: the usable cores; 0 runs in this "
                        "process)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run on an existing Dask distributed cluster instead")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _cmd_train(args: argparse.Namespace) -> int:
    from workloads.spec import load_workload
    from workloads.train import train

    workload = load_workload(resolve(args.workload, WORKLOAD_DIR, "workload"))
    manifest = train(workload, data_dir=args.data_dir, epochs=args.epochs, seed=args.seed,
                     out=args.out, progress=not args.quiet)
    print(f"test accuracy {100 * manifest['test_accuracy']:.2f} % -> "
          f"{manifest.get('checkpoint', args.out or workload.checkpoint_path)}")
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from workloads.download import download

    if not args.data_dir:
        raise UserError("imcsim data download needs --data-dir FOLDER (or IMCSIM_DATA set)")
    path = download(args.name, args.data_dir, progress=not args.quiet)
    print(f"{args.name}: ready in {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Train the digits CNN in seconds and simulate it bit-true on the ISAAC config."""
    from analysis.run import format_result, save, simulate
    from workloads.spec import load_workload
    from workloads.train import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = WORKLOAD_DIR / "digits_cnn.yaml"
    spec = read_yaml(base)
    spec["checkpoint"] = str((out / "digits_cnn.pt").resolve())
    demo_yaml = out / "digits_cnn.yaml"
    demo_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
    print(f"[1/2] training the digits CNN on scikit-learn digits (seed {args.seed})")
    manifest = train(load_workload(demo_yaml), seed=args.seed, out=out / "digits_cnn.pt",
                     progress=not args.quiet)
    print(f"      float test accuracy {100 * manifest['test_accuracy']:.2f} %")
    print("[2/2] simulating it bit-true on ISAAC-CE (arch_configs/isaac_32nm.yaml)")
    result = simulate(ARCH_DIR / "isaac_32nm.yaml", demo_yaml, samples=args.samples,
                      seed=args.seed, out_dir=out, progress=not args.quiet)
    print(format_result(result))
    print(f"\nwrote {save(result, out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``imcsim`` (exposed for documentation and tests)."""
    p = argparse.ArgumentParser(
        prog="imcsim",
        description="Cycle-level simulator of in-memory-computing DNN accelerators.")
    p.add_argument("--verbose", action="store_true", help="log more detail")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check an arch YAML and print every problem")
    v.add_argument("arch", help="arch YAML file, or the name of a shipped one")
    v.set_defaults(func=_cmd_validate)

    r = sub.add_parser("run", help="simulate a workload on an arch, bit-true, on real data")
    r.add_argument("arch", help="arch YAML file, or the name of a shipped one")
    r.add_argument("workload", help="workload YAML file, or the name of a shipped one")
    r.add_argument("--samples", type=int, default=None, help="test samples (default: all)")
    r.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    r.add_argument("--out", default=None,
                   help="output folder for result.json (default results/ARCH__WORKLOAD); "
                        "a rerun resumes there")
    r.add_argument("--data-dir", default=None, help="data folder (default: $IMCSIM_DATA)")
    r.add_argument("--batch-size", type=int, default=50, help="samples per batch")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--layer-by-layer", action="store_true",
                   help="run layers one after another instead of pipelined")
    r.add_argument("--trace", metavar="LAYER", default=None,
                   help="write a per-cycle CSV trace of LAYER (first test sample) into --out")
    r.add_argument("--report", choices=("html", "md"), default=None,
                   help="also write report.html or report.md beside result.json")
    r.add_argument("--allow-float-products", action="store_true",
                   help="run matrix products that do not map onto crossbars in float instead "
                        "of refusing them (the result's energy is marked incomplete)")
    r.set_defaults(func=_cmd_run)

    mc = sub.add_parser("montecarlo", help="simulate N chips (variation seeds) in parallel; "
                                           "mean, std and confidence intervals")
    mc.add_argument("arch", help="arch YAML file, or the name of a shipped one")
    mc.add_argument("workload", help="workload YAML file, or the name of a shipped one")
    mc.add_argument("--chips", type=int, default=10, help="chips to simulate (default 10)")
    mc.add_argument("--samples", type=int, default=None, help="test samples per chip")
    mc.add_argument("--seed", type=int, default=0, help="run seed, the same on every chip")
    mc.add_argument("--base-seed", type=int, default=0,
                    help="chip i has variation.seed BASE_SEED + i")
    mc.add_argument("--vary", default=None, metavar="PATH=V1,V2,...",
                    help="repeat at several values of one arch setting, e.g. "
                         "variation.cell.sigma=0,0.05,0.1 (accuracy vs variation)")
    mc.add_argument("--confidence", type=float, default=0.95, help="confidence level")
    mc.add_argument("--batch-size", type=int, default=100, help="samples per batch")
    mc.add_argument("--data-dir", default=None, help="data folder (default: $IMCSIM_DATA)")
    mc.add_argument("--out", default=None,
                    help="output folder (default results/montecarlo_ARCH__WORKLOAD); "
                         "montecarlo.db there makes a rerun resume")
    _add_executor_options(mc)
    mc.set_defaults(func=_cmd_montecarlo)

    rp = sub.add_parser("report", help="an HTML or Markdown report of a result.json")
    rp.add_argument("result", help="result.json written by imcsim run")
    rp.add_argument("--format", choices=("html", "md"), default="html", help="output format")
    rp.add_argument("--out", default=None, help="output file (default: beside result.json)")
    rp.add_argument("--montecarlo", default=None,
                    help="montecarlo.json to include (default: one beside result.json)")
    rp.set_defaults(func=_cmd_report)

    sw = sub.add_parser("sweep", help="evaluate a design space; resumable; Pareto front")
    sw.add_argument("spec", help="sweep YAML (see docs/sweeps.md)")
    sw.add_argument("--out", default=None,
                    help="output folder (default results/sweep_NAME); sweep.db there makes a "
                         "rerun resume")
    sw.add_argument("--data-dir", default=None,
                    help="data folder when the sweep YAML names none (default: $IMCSIM_DATA)")
    _add_executor_options(sw)
    sw.set_defaults(func=_cmd_sweep)

    t = sub.add_parser("train", help="train a workload's model and write its checkpoint")
    t.add_argument("workload", help="workload YAML file, or the name of a shipped one")
    t.add_argument("--epochs", type=int, default=None, help="override the YAML's epochs")
    t.add_argument("--seed", type=int, default=None, help="override the YAML's seed")
    t.add_argument("--out", default=None, help="checkpoint path (default: the YAML's)")
    t.add_argument("--data-dir", default=None, help="data folder (default: $IMCSIM_DATA)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    d = sub.add_parser("data", help="data sets")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("download", help="download a data set with checksums verified")
    dl.add_argument("name", help="mnist, fashion_mnist or cifar10")
    dl.add_argument("--data-dir", default=None, help="folder to put it in")
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(func=_cmd_data_download)

    m = sub.add_parser("demo", help="train a digits CNN in seconds and simulate it on ISAAC")
    m.add_argument("--out", default="results/demo", help="output folder")
    m.add_argument("--samples", type=int, default=None, help="test samples (default: all 360)")
    m.add_argument("--seed", type=int, default=0, help="seed of training and simulation")
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    m.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``imcsim`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="imcsim: %(levelname)s: %(message)s")
    if getattr(args, "data_dir", None) is None and "data_dir" in args:
        args.data_dir = os.environ.get("IMCSIM_DATA") or None
    try:
        return args.func(args)
    except UserError as err:
        print(f"imcsim: error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # output piped into a program that stopped reading (head)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep interpreter exit quiet
        return 141
    except KeyboardInterrupt:
        print("imcsim: interrupted; a rerun of the same command resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
