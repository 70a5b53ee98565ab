"""The ``imcsim`` command line: thin subcommands over the same API the tests use.

A user's mistake (:class:`~sim.errors.UserError`: bad YAML, missing data, impossible mapping)
prints one clear message and exits non-zero (2), never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from analysis.paths import ARCH_DIR, WORKLOAD_DIR, resolve
from sim.config.loader import read_yaml
from sim.errors import ConfigError, UserError
from sim.kernels.backend import NAMES, selected

#: Largest seed accepted: a stated range (32-bit words, what seeding APIs commonly take).
SEED_MAX = 2**32 - 1


def _whole(lo: int, hi: int | None = None, also: str | None = None
           ) -> Callable[[str], int | str]:
    """An argparse type: a whole number in ``lo..hi`` (or the word ``also``); anything else
    is exit 2 with the range."""
    allowed = f"a whole number from {lo:,} to {hi:,}" if hi is not None \
        else f"a whole number of at least {lo:,}"
    if also is not None:
        allowed = f"{also} or {allowed}"

    def parse(text: str) -> int | str:
        if also is not None and text == also:
            return text
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text[:40]!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value:,}"[:200])
        return value

    parse.__name__ = "whole number"  # argparse names the type in some messages
    return parse


def _fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (exclusive), "
                                         f"got {text[:40]!r}")
    return value


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
    from sim.macros.family import family_of

    print(f"{path}: valid: {arch.name}, {arch.organization.crossbars} "
          f"{family_of(arch).array_unit} of "
          f"{xb.rows}x{xb.columns}{'+1' if xb.unit_column else ''}, {xb.cell.bits}-bit "
          f"{xb.cell.technology} cells, {arch.weights.bits}-bit {arch.weights.encoding} weights "
          f"in {columns_per_weight(arch.weights, xb.cell)} columns, "
          f"{input_steps(arch.inputs, xb.dac)} input steps, {xb.adc.bits}-bit ADC "
          f"(largest partial sum {max_partial_sum(arch)})")
    for note in arch.notes:  # what the calibration scaled, and how (docs/components.md)
        print(f"  note: {note}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from analysis.run import format_result, save, simulate

    arch = resolve(args.arch, ARCH_DIR, "arch")
    workload = resolve(args.workload, WORKLOAD_DIR, "workload")
    out = Path(args.out) if args.out else Path("results") / f"{arch.stem}__{workload.stem}"
    result = simulate(arch, workload, samples=args.samples, seed=args.seed,
                      data_dir=args.data_dir, batch_size=args.batch_size, out_dir=out,
                      progress=not args.quiet, pipelined=not args.layer_by_layer,
                      trace_layer=args.trace, allow_float_products=args.allow_float_products,
                      first_sample=args.first_sample, workers=args.workers)
    # Files first, printout last: a closed stdout (`| head`) must not lose the result.
    wrote = [save(result, out)]
    if args.report:
        from analysis.report import write_report

        wrote.append(write_report(wrote[0], fmt=args.report))
    return _emit(format_result(result) + "\n\n" + "\n".join(f"wrote {p}" for p in wrote),
                 wrote)


def _silence_stdout() -> None:
    """Point the stdout descriptor at /dev/null so the interpreter's exit flush stays quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real descriptor (captured): nothing to flush into
        pass
    finally:
        os.close(devnull)


def _emit(text: str, wrote: list[Path]) -> int:
    """Print the report of files already written. A reader that stopped reading (`| head`)
    loses only the printout: one line on stderr names the saved files; exit 141 (SIGPIPE)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        _silence_stdout()
        print(f"imcsim: stdout was closed; results saved in {', '.join(map(str, wrote))}",
              file=sys.stderr)
        return 141
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from analysis.sweep import format_outcome, run_sweep
    from analysis.sweep_spec import load_sweep

    spec = load_sweep(args.spec)
    if args.data_dir and spec.data_dir is None:
        spec = dataclasses.replace(spec, data_dir=str(Path(args.data_dir).resolve()))
    outcome = run_sweep(spec, args.out, workers=args.workers, scheduler=args.scheduler,
                        progress=not args.quiet, command=" ".join(sys.argv),
                        backend=args.backend)
    print(format_outcome(outcome, spec))
    return 1 if outcome.errors else 0


def _cmd_montecarlo(args: argparse.Namespace) -> int:
    from analysis.montecarlo import format_montecarlo, parse_set, run_montecarlo

    arch = resolve(args.arch, ARCH_DIR, "arch")
    workload = resolve(args.workload, WORKLOAD_DIR, "workload")
    out = (Path(args.out) if args.out
           else Path("results") / f"montecarlo_{arch.stem}__{workload.stem}")
    report = run_montecarlo(arch, workload, chips=args.chips, samples=args.samples,
                            seed=args.seed, base_seed=args.base_seed, vary=args.vary,
                            batch_size=args.batch_size, data_dir=args.data_dir, out_dir=out,
                            workers=args.workers, scheduler=args.scheduler,
                            confidence=args.confidence, progress=not args.quiet,
                            command=" ".join(sys.argv), fixed=parse_set(args.set),
                            disjoint_samples=args.disjoint_samples, backend=args.backend)
    return _emit(f"{format_montecarlo(report)}\n\nwrote {out / 'montecarlo.json'}",
                 [out / "montecarlo.json"])


def _cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    path = write_report(args.result, fmt=args.format, out=args.out,
                        montecarlo_path=args.montecarlo)
    print(f"wrote {path}")
    return 0


def _add_executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=_whole(0, 1024), default=None,
                   help="local worker processes (default: the usable cores; an analytical "
                        "sweep runs in this process until the rest would take over 30 s, "
                        "then on them; 0 runs in this process)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run on an existing Dask distributed cluster instead")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_backend_option(p)


def _add_backend_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=NAMES, default=None,
                   help="array backend of the partial-sum GEMMs: numpy (float32 BLAS), torch "
                        "(int8 GEMM on the CPU where exact), cuda (a CUDA device where exact), "
                        "auto (cuda when present, else numpy); the same bits on each. "
                        "Default: $IMCSIM_BACKEND, else auto")


def _cmd_train(args: argparse.Namespace) -> int:
    from workloads.spec import load_workload
    from workloads.train import train

    workload = load_workload(resolve(args.workload, WORKLOAD_DIR, "workload"))
    # By default the checkpoint goes where the workload names it while none is there (a new
    # model: `imcsim run` then finds it), else to the output folder, never over the one the
    # workload uses (a committed, better-trained model would be silently replaced).
    if args.out:
        out = Path(args.out)
    elif not workload.checkpoint_path.exists():
        out = workload.checkpoint_path
    else:
        out = Path("results") / "train" / workload.name / workload.checkpoint_path.name
    manifest = train(workload, data_dir=args.data_dir, epochs=args.epochs, seed=args.seed,
                     out=out, progress=not args.quiet, force=args.force)
    print(f"test accuracy {100 * manifest['test_accuracy']:.2f} % -> {out}")
    if out.resolve() != workload.checkpoint_path.resolve():
        print(f"(workload {workload.name} uses {workload.checkpoint_path}; to use this model, "
              f"point its checkpoint: at {out.resolve()}, or train with --out "
              f"{workload.checkpoint_path} --force)")
    return 0


def _cmd_compress(args: argparse.Namespace) -> int:
    # `imcsim compress` (issue 10): ADMM compression of a trained workload; see
    # docs/compression.md. Kept in one block, apart from the other subcommands.
    from mappers.compress import compress, load_compression
    from workloads.spec import load_workload

    workload = load_workload(resolve(args.workload, WORKLOAD_DIR, "workload"))
    spec = load_compression(args.compression, workload.build_model())
    manifest = compress(workload, spec, out=args.out, data_dir=args.data_dir,
                        admm_epochs=args.epochs, finetune_epochs=args.finetune_epochs,
                        seed=args.seed, train_samples=args.train_samples,
                        progress=not args.quiet,
                        command=" ".join(["imcsim", *sys.argv[1:]]))
    totals = manifest["totals"]
    print(f"test accuracy {100 * manifest['baseline_accuracy']:.2f} % (float) -> "
          f"{100 * manifest['test_accuracy']:.2f} % (compressed); compressed layers keep "
          f"{totals['compressed_nonzero']} of {totals['compressed_weights']} weights "
          f"({totals['compressed_pruning_rate']:.2f}x)")
    for key, layer in manifest["layers"].items():
        print(f"  {key}: {layer['nonzero']}/{layer['weights']} nonzero "
              f"({layer['pruning_rate']:.2f}x), {', '.join(layer['methods'])}")
    print(f"wrote {manifest['workload_file']} and {manifest['checkpoint']} (+ manifest .json) "
          f"in {Path(args.out) if args.out else 'results/compress/' + manifest['workload']}")
    return 0


def _cmd_characterize(args: argparse.Namespace) -> int:
    # `imcsim characterize` (issue 11): linearity of one macro, before and after the ADC's
    # two-step calibration; see docs/characterize.md. Kept in one block.
    from analysis.characterize import characterize, summary_markdown, write

    path = resolve(args.arch, ARCH_DIR, "arch")
    result = characterize(path, samples=args.samples, chips=args.chips, seed=args.seed,
                          progress=not args.quiet)
    out = Path(args.out) if args.out else Path("results") / "characterize" / result.arch_name
    paths = write(result, out, plot=not args.no_plot)
    print(summary_markdown(result), end="")
    print(f"wrote {', '.join(str(p) for p in paths)}")
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
    from sim.fileio import atomic_write, ensure_writable_dir
    from workloads.spec import load_workload
    from workloads.train import train

    out = ensure_writable_dir(Path(args.out))
    base = WORKLOAD_DIR / "digits_cnn.yaml"
    spec = read_yaml(base)
    spec["checkpoint"] = str((out / "digits_cnn.pt").resolve())
    demo_yaml = out / "digits_cnn.yaml"
    atomic_write(demo_yaml, lambda fh: fh.write(yaml.safe_dump(spec, sort_keys=False)),
                 text=True)
    print(f"[1/2] training the digits CNN on scikit-learn digits (seed {args.seed})")
    # force: the checkpoint is the demo's own, in its output folder; a second demo remakes it.
    manifest = train(load_workload(demo_yaml), seed=args.seed, out=out / "digits_cnn.pt",
                     progress=not args.quiet, force=True)
    print(f"      float test accuracy {100 * manifest['test_accuracy']:.2f} %")
    print("[2/2] simulating it bit-true on ISAAC-CE (arch_configs/isaac_32nm.yaml)")
    result = simulate(ARCH_DIR / "isaac_32nm.yaml", demo_yaml, samples=args.samples,
                      seed=args.seed, out_dir=out, progress=not args.quiet)
    path = save(result, out)
    return _emit(f"{format_result(result)}\n\nwrote {path}", [path])


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
    r.add_argument("--samples", type=_whole(1), default=None,
                   help="test samples, at least 1 (default: all; more than the test split "
                        "uses the whole split and says so)")
    r.add_argument("--first-sample", type=_whole(0), default=0,
                   help="index of the first test sample (default 0): the run uses samples "
                        "FIRST .. FIRST + SAMPLES - 1, e.g. one Monte Carlo chip's slice")
    r.add_argument("--seed", type=_whole(0, SEED_MAX), default=0,
                   help="seed of every random draw, 0..2^32-1")
    r.add_argument("--out", default=None,
                   help="output folder for result.json (default results/ARCH__WORKLOAD); "
                        "a rerun resumes there")
    r.add_argument("--data-dir", default=None, help="data folder (default: $IMCSIM_DATA)")
    r.add_argument("--batch-size", type=_whole(1), default=50,
                   help="samples per batch, at least 1")
    r.add_argument("--workers", type=_whole(1, 1024, also="auto"), default="auto",
                   help="processes that run whole batches, each on one thread; the same "
                        "result bit for bit. 1: this process (its kernels on a thread per "
                        "core). Default auto: the first batch here, and the rest in one "
                        "process per core when they would take more than 30 s here")
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
    _add_backend_option(r)
    r.set_defaults(func=_cmd_run)

    mc = sub.add_parser("montecarlo", help="simulate N chips (variation seeds) in parallel; "
                                           "mean, std and confidence intervals")
    mc.add_argument("arch", help="arch YAML file, or the name of a shipped one")
    mc.add_argument("workload", help="workload YAML file, or the name of a shipped one")
    mc.add_argument("--chips", type=_whole(2), default=10,
                    help="chips to simulate, at least 2 (default 10)")
    mc.add_argument("--samples", type=_whole(1), default=None,
                    help="test samples per chip, at least 1 (default: all; with "
                         "--disjoint-samples, the test split divided by --chips)")
    mc.add_argument("--disjoint-samples", action="store_true",
                    help="chip i (in seed order) runs on its own test samples i*SAMPLES .. "
                         "(i+1)*SAMPLES-1 instead of every chip on the first SAMPLES: N chips "
                         "cover N x SAMPLES images; every --vary level uses the same slice "
                         "per chip (paired)")
    mc.add_argument("--seed", type=_whole(0, SEED_MAX), default=0,
                    help="run seed, the same on every chip, 0..2^32-1")
    mc.add_argument("--base-seed", type=_whole(0, SEED_MAX), default=0,
                    help="chip i has variation.seed BASE_SEED + i, 0..2^32-1")
    mc.add_argument("--vary", default=None, metavar="PATH=V1,V2,...",
                    help="repeat at several values of one arch setting, e.g. "
                         "variation.cell.sigma=0,0.05,0.1 (accuracy vs variation)")
    mc.add_argument("--set", action="append", default=None, metavar="PATH=VALUE",
                    help="set an arch setting on every chip, e.g. variation.cell.sigma=0.1 "
                         "or weights.encoding=differential; repeatable")
    mc.add_argument("--confidence", type=_fraction, default=0.95,
                    help="confidence level, between 0 and 1")
    mc.add_argument("--batch-size", type=_whole(1), default=100,
                    help="samples per batch, at least 1")
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
    t.add_argument("--epochs", type=_whole(1, 100_000), default=None,
                   help="override the YAML's epochs, at least 1")
    t.add_argument("--seed", type=_whole(0, SEED_MAX), default=None,
                   help="override the YAML's seed, 0..2^32-1")
    t.add_argument("--out", default=None,
                   help="checkpoint file (default: the workload's checkpoint path while no "
                        "file is there, else results/train/WORKLOAD/CHECKPOINT_NAME); "
                        "the manifest goes beside it")
    t.add_argument("--force", action="store_true",
                   help="allow --out to replace a checkpoint that a workload YAML names")
    t.add_argument("--data-dir", default=None, help="data folder (default: $IMCSIM_DATA)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    # -- imcsim compress (issue 10) --
    cp = sub.add_parser("compress", help="ADMM-compress a trained workload (pruning, "
                                         "patterns, unification, BSP, polarization, "
                                         "quantization) into a new workload")
    cp.add_argument("workload", help="workload YAML file, or the name of a shipped one")
    cp.add_argument("compression", help="compression YAML (see docs/compression.md)")
    cp.add_argument("--out", default=None,
                    help="output folder (default results/compress/NAME); a rerun resumes")
    cp.add_argument("--epochs", type=int, default=None, help="override admm.epochs")
    cp.add_argument("--finetune-epochs", type=int, default=None,
                    help="override finetune.epochs")
    cp.add_argument("--seed", type=int, default=None, help="override train.seed")
    cp.add_argument("--train-samples", type=int, default=None,
                    help="train on the first N training samples only (a short run on a "
                         "loaded machine; default: all, the manifest records the count)")
    cp.add_argument("--data-dir", default=None, help="data folder (default: $IMCSIM_DATA)")
    cp.add_argument("--quiet", action="store_true", help="no progress bar")
    cp.set_defaults(func=_cmd_compress)

    # -- imcsim characterize (issue 11) --
    ch = sub.add_parser("characterize", help="linearity of one macro: ideal vs output code "
                                             "per column, before and after ADC calibration")
    ch.add_argument("arch", help="arch YAML file, or the name of a shipped one")
    ch.add_argument("--samples", type=_whole(1), default=524_288,
                    help="conversions in all, split over the chips (default 524,288, "
                         "CAP-RAM's measurement)")
    ch.add_argument("--chips", type=_whole(1, 1000), default=2,
                    help="simulated chips (seeds), 1..1000 (default 2)")
    ch.add_argument("--seed", type=_whole(0, SEED_MAX), default=None,
                    help="seed of the chips (default: the arch's variation.seed)")
    ch.add_argument("--out", default=None,
                    help="output folder (default results/characterize/ARCH_NAME)")
    ch.add_argument("--no-plot", action="store_true", help="tables only, no PNG")
    ch.add_argument("--quiet", action="store_true", help="no progress bar")
    ch.set_defaults(func=_cmd_characterize)

    d = sub.add_parser("data", help="data sets")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dl = dsub.add_parser("download", help="download a data set with checksums verified")
    dl.add_argument("name", help="mnist, fashion_mnist or cifar10")
    dl.add_argument("--data-dir", default=None, help="folder to put it in")
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(func=_cmd_data_download)

    m = sub.add_parser("demo", help="train a digits CNN in seconds and simulate it on ISAAC")
    m.add_argument("--out", default="results/demo", help="output folder")
    m.add_argument("--samples", type=_whole(1), default=None,
                   help="test samples, at least 1 (default: all 360)")
    m.add_argument("--seed", type=_whole(0, SEED_MAX), default=0,
                   help="seed of training and simulation, 0..2^32-1")
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    m.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``imcsim`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a bad argument (exit 2, message printed) or --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="imcsim: %(levelname)s: %(message)s")
    if getattr(args, "data_dir", None) is None and "data_dir" in args:
        args.data_dir = os.environ.get("IMCSIM_DATA") or None
    try:
        # --backend: checked before any work (a missing torch or GPU is one message), this
        # process's and its workers' backend for this command only.
        with selected(getattr(args, "backend", None)):
            return args.func(args)
    except UserError as err:
        print(f"imcsim: error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # output piped into a program that stopped reading (head)
        _silence_stdout()  # keep interpreter exit quiet
        return 141
    except OSError as err:
        # The machine, not imcsim: a file that vanished or cannot be read, a full disk that
        # a writer did not name. Still one message naming the file, not a traceback.
        where = f"{err.filename}: " if err.filename else ""
        print(f"imcsim: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imcsim: interrupted; a rerun of the same command resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
