"""The command-line interface: ``python -m upbench {list,info,suites,plan,run,report,compare}``.

Every user error (unknown operator, bad suite file, missing dataset path, bad ``--set``) and every
filesystem error (a full disk, a read-only or unwritable folder, a suite file that is not UTF-8)
ends the program with exit code 2 and one line on stderr naming the problem, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from upbench import __version__
from upbench.errors import UpbenchError
from upbench.files import describe_error
from upbench.registry import list_operators, operator_info

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (plus a hint), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


#: Every table the CLI prints fits a terminal this wide (the last column wraps).
WIDTH = 100


def _table(rows: list[list[str]], header: list[str], width: int = WIDTH) -> str:
    """Left-aligned columns two spaces apart; the last column wraps so that lines fit ``width``."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lead = sum(widths[:-1]) + 2 * (len(widths) - 1)
    last = max(12, width - lead)
    widths[-1] = min(widths[-1], last)
    out = []
    for r in [header, ["-" * w for w in widths], *rows]:
        cells = [str(c) for c in r]
        parts = textwrap.wrap(cells[-1], last, break_on_hyphens=False) or [""] if len(cells[-1]) > last else [cells[-1]]
        for i, part in enumerate(parts):
            shown = (cells[:-1] if i == 0 else [""] * (len(cells) - 1)) + [part]
            out.append("  ".join(c.ljust(w) for c, w in zip(shown, widths)).rstrip())
    return "\n".join(out)


def cmd_list(args: argparse.Namespace) -> int:
    """Print a table (or JSON) of the registered operators."""
    guided = {"guided": True, "unguided": False}.get(args.kind)
    names = list_operators(args.pattern, guided=guided)
    if args.json:
        print(json.dumps([_info_dict(n) for n in names], indent=2))
        return 0
    rows = []
    for n in names:
        info = operator_info(n)
        rows.append(
            [
                n,
                info.family,
                "yes" if info.guided else "no",
                "yes" if info.learnable else "no",
                "yes" if info.any_size else "no",
                info.scales_text(),
                info.paper or "-",
            ]
        )
    print(_table(rows, ["name", "family", "guided", "learnable", "any size", "scales", "paper"]))
    print(f"\n{len(names)} operator(s). Title, code, conventions, deviations: python -m upbench info NAME")
    return 0


def _info_dict(name: str) -> dict:
    info = operator_info(name)
    return {
        "name": info.name,
        "title": info.title,
        "guided": info.guided,
        "guide_passthrough": info.guide_passthrough,
        "learnable": info.learnable,
        "paper": info.paper,
        "scales": list(info.scales) if info.scales is not None else "any",
        "any_size": info.any_size,
        "family": info.family,
        "code": info.code,
        "conventions": dict(info.conventions),
        "deviations": list(info.deviations),
        "notes": list(info.notes),
        "aliases": list(info.aliases),
        "options": {k: repr(v) for k, v in info.options.items()},
        "origin": info.origin,
        "module": info.module,
    }


def cmd_info(args: argparse.Namespace) -> int:
    """Print everything the registry knows about one operator."""
    d = _info_dict(args.name)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    wrap = lambda s: textwrap.fill(s, WIDTH, initial_indent="  - ", subsequent_indent="    ")  # noqa: E731
    field = lambda s: textwrap.fill(s, WIDTH, initial_indent="  ", subsequent_indent="      ")  # noqa: E731
    print(f"{d['title']} ('{d['name']}')")
    print(field(f"guided: {d['guided']}   learnable: {d['learnable']}   any output size: {d['any_size']}"))
    print(field(f"scales: {operator_info(args.name).scales_text()}"))
    print(field(f"family: {d['family']}"))
    print(field(f"guide passthrough (output can carry guide content directly): {d['guide_passthrough']}"))
    print(field(f"paper: {d['paper'] or '-'}"))
    print(field(f"code: {d['code'] or '-'}"))
    print(field(f"module: {d['module']} ({d['origin']})"))
    if d["aliases"]:
        print(field(f"aliases: {', '.join(d['aliases'])}"))
    print("options:" + ("" if d["options"] else " none"))
    for k, v in d["options"].items():
        print(field(f"{k} = {v}"))
    for title, items in (
        ("conventions", [f"{k}: {v}" for k, v in d["conventions"].items()]),
        ("deviations from the official code", d["deviations"]),
        ("notes", d["notes"]),
    ):
        print(f"{title}:" + ("" if items else " none"))
        for item in items:
            print(wrap(item))
    return 0


def cmd_suites(args: argparse.Namespace) -> int:
    """List the suites shipped with upbench."""
    from upbench.suite import describe_builtin_suites

    rows = [[name, desc] for name, desc in describe_builtin_suites()]
    print(_table(rows, ["suite", "description"]))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """List the cells of a suite after overrides and filters, with their estimated training time.

    Works without the dataset on disk: a missing or unreadable dataset is listed at the end as a
    problem that would stop ``run`` (exit 0); any other problem exits 2 as ``run`` would."""
    from upbench.cost import duration_text
    from upbench.driver import plan_device
    from upbench.suite import data_problems, load_suite

    device = plan_device(args.device)
    suite = load_suite(args.suite, overrides=args.set, only=args.only, device=device, check_data=False)
    cells = suite.cells(device)
    costs = {c.cell_id: c for c in _costs(cells, args)}
    rows = []
    for c in cells:
        cost = costs.get(c.cell_id)
        shown = "-" if cost is None or cost.hours is None else duration_text(cost.hours, cost.device)
        rows.append([c.cell_id, *c.label_fields(), shown])
    print(f"suite '{suite.name}': {len(cells)} cell(s)")
    if rows:
        print(_table(rows, ["cell_id", *cells[0].label_names(), "estimate"]))
    if costs:
        from upbench.cost import summary

        print()
        print(summary(list(costs.values())))
    problems = data_problems(suite)
    if problems:
        print(f"\nproblems that would stop `run` ({len(problems)}):")
        for line in problems:
            print(textwrap.fill(line, WIDTH, initial_indent="  - ", subsequent_indent="    "))
    return 0


def _costs(cells: list, args: argparse.Namespace) -> list:
    """Estimated training time per train cell (see :mod:`upbench.cost`)."""
    from upbench.cost import estimate
    from upbench.driver import resolve_device

    device = resolve_device(args.device) if args.probe else "cpu"
    return estimate(cells, probe=args.probe, device=device)


def cmd_run(args: argparse.Namespace) -> int:
    """Run a suite (resuming an interrupted run in the same output folder)."""
    from upbench.driver import resolve_device, run_suite
    from upbench.suite import load_suite

    device = resolve_device(args.device)
    suite = load_suite(args.suite, overrides=args.set, only=args.only, device=device)
    options = {
        "workers": args.workers,
        "ray_address": args.ray_address,
        "cpus_per_cell": args.cpus_per_cell,
        "gpus_per_node": args.gpus_per_node,
        "partition": args.partition,
        "account": args.account,
        "mem_gb": args.mem_gb,
        "time_min": args.time_min,
        "sbatch": _sbatch_options(args.sbatch) or None,
    }
    summary = run_suite(
        suite,
        out_dir=args.out,
        device=device,
        progress=not args.no_progress,
        executor=args.executor,
        executor_options=options,
        dry_run=args.dry_run,
        command=getattr(args, "command", None),
        replace_stale=args.replace_stale,
    )
    if args.dry_run:
        return 0
    print(summary.describe())
    if not args.no_report and summary.results_path.exists():
        from upbench.reporting import write_report

        report_dir = write_report(summary.run_dir)
        print(f"report: {report_dir}")
    return 0 if summary.failed == 0 else 1


def _sbatch_options(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise UpbenchError(f"--sbatch expects KEY=VALUE (an #SBATCH option without dashes), got '{item}'")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got '{text}'")
    return int(text)


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got '{text}'")
    return int(text)


def cmd_report(args: argparse.Namespace) -> int:
    """Write tables, figures and report.html for a run folder (finished or partial), or re-draw
    them from a report folder that ships its run (``report/run/``)."""
    from upbench.reporting import write_report
    from upbench.reporting.bundle import resolve_run_dir

    resolve_run_dir(args.run_dir)  # one clear line when it is neither
    out = write_report(
        args.run_dir, out_dir=args.out, metrics=args.metrics, columns=args.columns, compute_audit=args.audit
    )
    print(f"report: {out} (report.md, report.html)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Put the operators of several runs side by side: each run's mean±std and each later run minus
    the first, with intervals where seeds and validation images pair (``upbench.reporting.runs``)."""
    from upbench.reporting.runs import compare_runs, comparison_text, load_runs

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    runs = load_runs(args.runs, metrics, n_boot=args.n_boot)
    frame, unmatched = compare_runs(runs)
    if frame.empty:
        raise UpbenchError("compare: no setting of the later runs matches one of the first run")
    print(comparison_text(runs, frame, unmatched), end="")
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.csv, index=False, float_format="%.10g")
        print(f"\ncsv: {args.csv}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Measure whether a dataset can rank upsamplers: shortcut ceilings (the best per-pixel colour
    rule, a classifier that sees RF px, trained to convergence), the label seen only on the LR grid
    per ratio, a guided label oracle, boundary visibility and class shares, on the val split."""
    from upbench.audit.command import run_audit

    return run_audit(args)


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Pretrain an encoder on a generated dataset's 'pretrain' split (no upsampler involved): the
    command that makes the weights shipped in upbench/weights/."""
    from upbench.pretraining import PretrainConfig, pretrain, save_weights

    chosen = {k: getattr(args, k) for k in ("size", "pool", "iters", "batch", "lr", "balance")}
    config = PretrainConfig(
        architecture=args.architecture,
        preset=args.preset,
        dataset=args.dataset,
        **{k: v for k, v in chosen.items() if v is not None},
    )
    encoder = "vit" if config.architecture == "plain" else "mit"
    name = args.name or f"{config.dataset}_{encoder}_{config.preset}"
    from tqdm.auto import tqdm

    with tqdm(total=config.iters, desc="pretrain", disable=args.no_progress, dynamic_ncols=True) as bar:

        def step(t: int, loss: float) -> None:
            bar.update(1)
            if t % 50 == 0:
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

        state, record = pretrain(config, progress=step, checkpoints=(20,))
    record["command"] = args.command
    path = save_weights(state, record, Path(args.out), name)
    print(
        f"{path}: {record['params']} parameters, loss {record['first_loss']:.3f} -> {record['final_loss']:.3f}, "
        f"{record['generation_seconds']:.0f} s generating + {record['training_seconds']:.0f} s training "
        f"({record['threads']} threads); sha256 {record['sha256'][:16]}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m upbench``."""
    from upbench.audit.audit import AuditSettings
    from upbench.executors import executor_names  # the --executor choices: every registered executor
    from upbench.pretraining import PretrainConfig

    parser = _Parser(prog="upbench", description="Benchmark and analysis suite for feature upsamplers.")
    parser.add_argument("--version", action="version", version=f"upbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("list", help="table of the registered operators", description=cmd_list.__doc__)
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name filter, e.g. 'sapa*'")
    p.add_argument("--kind", choices=["all", "guided", "unguided"], default="all")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="metadata, options and deviations of one operator", description=cmd_info.__doc__)
    p.add_argument("name", help="operator name (see 'upbench list')")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("suites", help="the suites shipped with upbench", description=cmd_suites.__doc__)
    p.set_defaults(func=cmd_suites)

    def suite_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("suite", help="a shipped suite name (see 'upbench suites') or a path to a TOML file")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a suite setting, e.g. --set train.iters=50 (repeatable)",
        )
        p.add_argument(
            "--only",
            action="append",
            default=[],
            metavar="FILTER",
            help="keep cells matching FIELD=GLOB (e.g. operator=resfu, scale=4; a comma list "
            "operator=resfu,sapa keeps any of them) or a cell id prefix; repeated filters must all match",
        )

    p = sub.add_parser("plan", help="list the cells a suite would run", description=cmd_plan.__doc__)
    suite_args(p)
    p.add_argument(
        "--probe", action="store_true", help="measure a few training steps of each cell's setting on --device"
    )
    p.add_argument(
        "--device",
        default="auto",
        help="device the cells are planned (and --probe measures) on: cpu, cuda, cuda:N or auto",
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("run", help="run a suite; re-running resumes", description=cmd_run.__doc__)
    suite_args(p)
    p.add_argument("--out", default=None, help="results directory (default: runs/<suite>)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-report", action="store_true", help="do not write the report after the run")
    p.add_argument(
        "--replace-stale",
        action="store_true",
        help="run into a folder of another suite or settings (its finished cells not planned now leave the report)",
    )
    g = p.add_argument_group("executors (default: the suite's [executor] table, else local)")
    g.add_argument("--executor", choices=executor_names(), default=None, help="where the cells run")
    g.add_argument("--workers", type=_non_negative, default=None, help="ray: cells at once (0: no cap)")
    g.add_argument("--ray-address", default=None, help="ray: join this cluster (e.g. auto); default: a local Ray")
    g.add_argument(
        "--cpus-per-cell", type=_positive, default=None, help="ray, slurm: CPUs (threads) per process of a cell"
    )
    g.add_argument(
        "--gpus-per-node",
        type=_non_negative,
        default=None,
        help="slurm: GPUs per node; a cell of more processes (train.world_size) spans nodes (0: one node)",
    )
    g.add_argument("--partition", default=None, help="slurm: partition")
    g.add_argument("--account", default=None, help="slurm: account")
    g.add_argument("--mem-gb", type=_non_negative, default=None, help="slurm: memory per job in GB")
    g.add_argument("--time-min", type=_positive, default=None, help="slurm: time limit per job in minutes")
    g.add_argument(
        "--sbatch", action="append", default=[], metavar="KEY=VALUE", help="slurm: extra #SBATCH option (repeatable)"
    )
    g.add_argument("--dry-run", action="store_true", help="slurm: print the jobs that would be submitted")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "report", help="tables, figures and report.html from a run directory", description=cmd_report.__doc__
    )
    p.add_argument("run_dir", help="a run directory (results.jsonl) or a report folder that ships its run")
    p.add_argument(
        "--out", default=None, help="output folder (default: RUN_DIR/report; for a report folder runs/SUITE-report)"
    )
    p.add_argument(
        "--metrics", default=None, help="accuracy columns of the .md/.tex tables, e.g. mIoU,BF (default mIoU,BF,BIoU)"
    )
    p.add_argument(
        "--columns",
        default=None,
        help="other columns: params, operator_params, gmacs, latency_forward, peak_memory "
        "(default operator_params,gmacs,latency_forward)",
    )
    p.add_argument(
        "--audit", action="store_true", help="compute the audit of the run's dataset if it is not cached (minutes)"
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="the operators of several runs side by side", description=cmd_compare.__doc__)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders or report folders; the first is the reference")
    p.add_argument("--metrics", default="mIoU,BF,BIoU", help="comma list of mIoU, BF, BIoU (default: all three)")
    p.add_argument("--n-boot", type=_positive, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--csv", default=None, help="also write the tidy comparison to this CSV file")
    p.set_defaults(func=cmd_compare)

    audit = AuditSettings()  # the help texts show the defaults the commands use
    p = sub.add_parser("audit", help="can this dataset rank upsamplers? its ceilings", description=cmd_audit.__doc__)
    p.add_argument(
        "dataset", nargs="+", help="registered dataset(s): contextual, colourcoded, ade20k, ...; several side by side"
    )
    p.add_argument("--root", default=None, help="folder of a real dataset (default: $UPBENCH_DATA or ./data)")
    p.add_argument("--size", type=_positive, default=None, help="image side (default: the dataset's own)")
    p.add_argument("--count", type=_positive, default=None, help=f"val images audited (default {audit.count})")
    p.add_argument("--train-count", type=_positive, default=None, help=f"train images (default {audit.train_count})")
    ratios = " ".join(map(str, audit.ratios))
    p.add_argument("--ratios", type=_positive, nargs="+", default=None, help=f"LR strides (default: {ratios})")
    local = audit.local
    p.add_argument("--rf", type=_positive, default=None, help=f"local classifier's field (default {local.rf})")
    p.add_argument(
        "--local-iters", type=_positive, default=None, help=f"local classifier steps (default {local.iters})"
    )
    p.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", help="a dataset option (repeatable)")
    p.add_argument("--out", default=None, help="output folder (default: runs/audit/<dataset>-<key>)")
    p.add_argument("--no-cache", action="store_true", help="recompute even if the audit is cached")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_audit)

    pre = PretrainConfig()
    p = sub.add_parser("pretrain", help="pretrain an encoder on generated data", description=cmd_pretrain.__doc__)
    p.add_argument("architecture", choices=["plain", "hierarchical"], help="plain: ViT encoder; hierarchical: MiT")
    p.add_argument("--preset", default="tiny", help="encoder preset (default tiny)")
    p.add_argument("--dataset", default="contextual", help="generated dataset with a 'pretrain' split")
    p.add_argument("--size", type=_positive, default=None, help=f"image side (default {pre.size})")
    p.add_argument("--pool", type=_positive, default=None, help=f"distinct pretrain images (default {pre.pool})")
    p.add_argument("--iters", type=_positive, default=None, help=f"optimizer steps (default {pre.iters})")
    p.add_argument("--batch", type=_positive, default=None, help=f"images per step (default {pre.batch})")
    p.add_argument("--lr", type=float, default=None, help=f"AdamW peak learning rate (default {pre.lr:g})")
    p.add_argument("--balance", type=float, default=None, help=f"class weight exponent, 0 to 1 (default {pre.balance})")
    p.add_argument("--name", default=None, help="file name (default: <dataset>_<encoder>_<preset>)")
    p.add_argument("--out", default="runs/pretrain", help="output folder (default runs/pretrain)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pretrain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m upbench`` and the ``upbench`` script; returns the exit code."""
    args = build_parser().parse_args(argv)
    args.command = "python -m upbench " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except UpbenchError as err:  # one line per problem (a suite can have several)
        for line in str(err).splitlines() or [type(err).__name__]:
            print(f"upbench: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("upbench: interrupted; finished cells are saved, run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except (OSError, UnicodeDecodeError) as err:  # a full disk, a read-only folder, a file that is not text
        print(f"upbench: error: {describe_error(err)}", file=sys.stderr)
        return EXIT_USAGE
