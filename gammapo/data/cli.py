"""The ``gammapo select`` and ``gammapo augment`` command lines.

::

    gammapo select IN OUT --select-fraction 0.4 [--variant reference-free|reference-based] [--weight 1.0]
                          [--baseline explicit-margin|implicit-margin] [--model PATH [--ref-model PATH]]
    gammapo augment IN OUT [--template TEXT] [--mode auto|system|prefix] [--ties keep|drop]

IN is a JSONL file, a JSON list or a ``datasets`` directory (``save_to_disk``); OUT is written as the
same kind (a file input gives a JSON list when OUT ends in ``.json``, JSONL otherwise). Every option,
the input's format and the output location are checked before any work; a bad record stops the run
with its place and field unless ``--skip-invalid``. Errors are one line on stderr with exit status 2;
the counts go to stderr as one line (``read N, invalid N, ... written N``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Sequence

from gammapo_spec.alignment_potential import METRICS, VARIANTS
from gammapo_spec.errors import ConfigError, GammaPOError
from gammapo.data.reward_augmented import DEFAULT_TEMPLATE

__all__ = ["select_main", "augment_main", "build_select_parser", "build_augment_parser"]


class UsageError(Exception):
    """A command line that cannot run: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of the usage block
        raise UsageError(message)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="a JSONL file, a .json list or a datasets directory (save_to_disk)")
    p.add_argument("output", metavar="OUT", help="where to write the result (same kind as IN; a .json name gives a JSON list)")
    p.add_argument("--split", help="the split of a saved DatasetDict")
    p.add_argument("--chosen-score-field", default="score_chosen", help="field of s_w (default: score_chosen)")
    p.add_argument("--rejected-score-field", default="score_rejected", help="field of s_l (default: score_rejected)")
    p.add_argument("--skip-invalid", action="store_true", help="count and skip bad records instead of stopping")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it exists (only a JSON/JSONL file or a datasets folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_select_parser() -> argparse.ArgumentParser:
    """The ``gammapo select`` argument parser."""
    p = _Parser(prog="gammapo select", description="Keep the top fraction of preference pairs by alignment potential.")
    _common(p)
    p.add_argument("--select-fraction", type=float, metavar="F",
                   help="required: fraction of the valid pairs to keep, in (0, 1] (the same option as in gammapo train)")
    p.add_argument("--fraction", type=float, dest="deprecated_fraction", metavar="F",
                   help="deprecated: the former spelling of --select-fraction")
    p.add_argument("--variant", choices=VARIANTS, default="reference-free", help="implicit margin (default: reference-free)")
    p.add_argument("--weight", type=float, default=1.0, help="weight w >= 0 of the implicit term (default 1)")
    p.add_argument("--baseline", choices=[m for m in METRICS if m != "alignment-potential"],
                   help="rank by a baseline metric instead of the alignment potential")
    p.add_argument("--score-field", help="also write each kept pair's score under this (new) field")
    p.add_argument("--replace-score-field", action="store_true",
                   help="allow --score-field to name a field the data already has (its values are replaced)")
    p.add_argument("--model", help="local causal LM directory: fills missing chosen/rejected log-probs and lengths")
    p.add_argument("--ref-model", help="local reference model directory: fills missing ref_* log-probs")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass with --model (default 8)")
    return p


def build_augment_parser() -> argparse.ArgumentParser:
    """The ``gammapo augment`` argument parser."""
    from .augment import AUGMENT_MODES

    p = _Parser(prog="gammapo augment", description="Reward-augmented relabelling: two score-conditioned pairs per pair.")
    _common(p)
    p.add_argument("--template", default=DEFAULT_TEMPLATE,
                   help="condition template: text with {score} fields, optionally formatted ({score:.1f})")
    p.add_argument("--mode", choices=AUGMENT_MODES, default="auto",
                   help="auto (default): a system message for conversational prompts, a prefix for plain-string "
                        "ones; system: always a system message; prefix: always before the prompt")
    p.add_argument("--separator", default="\n\n", help="between the condition and the text it precedes (default: a blank line)")
    p.add_argument("--ties", choices=("keep", "drop"), default="keep", help="pairs with s_w == s_l (default: keep)")
    p.add_argument("--filter-chosen-field", metavar="FIELD",
                   help="keep pairs by this score of the chosen response instead of --chosen-score-field "
                        "(with --filter-rejected-field; the conditions still use the score fields)")
    p.add_argument("--filter-rejected-field", metavar="FIELD",
                   help="the rejected response's filter score (with --filter-chosen-field)")
    return p


def _quiet_libraries() -> None:
    """No progress bars from ``datasets`` and ``transformers`` (``--quiet``)."""
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def _report(prog: str, counts: dict[str, int], output: str) -> None:
    print(f"{prog}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()) + f" -> {output}", file=sys.stderr)


def _run(prog: str, parser: argparse.ArgumentParser, body, argv) -> int:
    try:
        args = parser.parse_args(argv)
        return body(args)
    except (UsageError, GammaPOError, OSError) as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def _prepare(args):
    """Check the input's format and the output location (before any reading); returns (input kind, output kind)."""
    from .io import detect_kind
    from .output import check_output, output_kind

    if args.quiet:
        _quiet_libraries()
    in_kind = detect_kind(args.input)
    if args.split is not None and in_kind != "datasets":
        raise UsageError(f"--split is for a datasets folder holding a DatasetDict; {args.input!r} is a file")
    out_kind = output_kind(args.output, in_kind)
    check_output(args.output, out_kind, inputs=[args.input], overwrite=args.overwrite, overwrite_flag="--overwrite")
    return in_kind, out_kind


def _read(args):
    from .io import read_data

    table = read_data(args.input, split=args.split, skip_invalid=args.skip_invalid)
    if len(table) == 0 and not table.invalid:
        raise UsageError(f"{args.input} holds no records")
    return table


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _first_missing(table, fields: Sequence[str]) -> tuple[int, str] | None:
    """The first record lacking one of ``fields`` (absent, null or NaN) and that field, or ``None``."""
    if table.kind == "datasets":
        present = set(table.data.column_names)
        for f in fields:
            if f not in present and len(table):
                return 0, f
        columns = [(f, table.data[f]) for f in fields]
        for i in range(len(table)):
            for f, col in columns:
                if _missing(col[i]):
                    return i, f
        return None
    for i, r in enumerate(table.data):
        for f in fields:
            if _missing(r.get(f)):
                return i, f
    return None


def _select_options(args) -> None:
    if args.deprecated_fraction is not None:
        if args.select_fraction is not None:
            raise UsageError("give --select-fraction only (--fraction is its deprecated spelling)")
        print("gammapo select: note: --fraction is deprecated; use --select-fraction", file=sys.stderr)
        args.select_fraction = args.deprecated_fraction
    if args.select_fraction is None:
        raise UsageError("--select-fraction is required (the fraction of the pairs to keep, in (0, 1])")
    if not 0.0 < args.select_fraction <= 1.0:
        raise UsageError(f"--select-fraction must lie in (0, 1], got {args.select_fraction:g}")
    if not (math.isfinite(args.weight) and args.weight >= 0):
        raise UsageError(f"--weight must be a finite number >= 0, got {args.weight:g}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.score_field is not None and not args.score_field:
        raise UsageError("--score-field needs a field name")
    for flag, path in (("--model", args.model), ("--ref-model", args.ref_model)):
        if path is not None and not os.path.isdir(path):
            what = "does not exist" if not os.path.exists(path) else "is not a directory"
            raise UsageError(f"{flag} {path!r} {what}: give a local model folder (save_pretrained); nothing is downloaded")


def select_main(argv: Sequence[str] | None = None) -> int:
    """Run ``gammapo select``; returns the exit status (0, or 2 on a bad record or option)."""

    def body(args) -> int:
        from gammapo_spec.alignment_potential import selection_size

        from .io import DataError, write_data
        from .logprobs import fill_logprobs, load_model
        from .select import LENGTH_COLUMNS, LOGP_COLUMNS, REFERENCE_COLUMNS, needed_fields, select_pairs

        _select_options(args)
        metric = args.baseline or "alignment-potential"
        fields = needed_fields(metric, args.variant, args.chosen_score_field, args.rejected_score_field)
        _, out_kind = _prepare(args)
        table = _read(args)
        if selection_size(len(table), args.select_fraction) < 1:
            raise UsageError(f"--select-fraction {args.select_fraction:g} keeps no pair of the {len(table)} records "
                             f"in {args.input}")
        computed = set(LOGP_COLUMNS + LENGTH_COLUMNS) if args.model else set()
        if args.score_field and not args.replace_score_field and args.score_field in table.columns | computed:
            raise UsageError(f"--score-field {args.score_field!r} is already a field of {args.input}; choose another "
                             "name, or add --replace-score-field to replace its values")
        uses_ref = "ref_chosen_logps" in fields
        if uses_ref and not args.ref_model and not args.skip_invalid:
            missing = _first_missing(table, REFERENCE_COLUMNS)
            if missing:
                raise DataError(f"field {missing[1]!r} is missing; --variant reference-based needs ref_chosen_logps and "
                                "ref_rejected_logps: --ref-model DIR computes them, or use --variant reference-free",
                                field=missing[1], location=table.where(missing[0]))
        show = False if args.quiet else None
        for flag, path, prefix in (("--model", args.model, ""), ("--ref-model", args.ref_model, "ref_")):
            if path is None:
                continue
            if (prefix == "ref_" and not uses_ref) or (prefix == "" and metric == "explicit-margin"):
                why = "--variant reference-based" if prefix else "the alignment potential and --baseline implicit-margin"
                print(f"gammapo select: note: {flag} is used by {why} only; not loaded", file=sys.stderr)
                continue
            model, tok = load_model(path)
            if args.quiet:
                _quiet_libraries()
            table.data, n = fill_logprobs(table, model, tok, prefix=prefix, batch_size=args.batch_size, show_progress=show)
            print(f"gammapo select: computed {prefix or 'policy '}log-probs for {n} records with {path}", file=sys.stderr)
        try:
            result = select_pairs(table, fraction=args.select_fraction, metric=metric, variant=args.variant,
                                  weight=args.weight, chosen_score_field=args.chosen_score_field,
                                  rejected_score_field=args.rejected_score_field, skip_invalid=args.skip_invalid,
                                  score_field=args.score_field, replace_score_field=args.replace_score_field)
        except DataError as exc:
            raise DataError(str(exc) + _hint(exc.field, args), field=exc.field) from None
        for where, message in result.skipped:
            print(f"gammapo select: skipped {where}: {message}", file=sys.stderr)
        if result.counts["written"] == 0:
            valid = result.counts["read"] - result.counts["invalid"]
            raise UsageError(f"--select-fraction {args.select_fraction:g} keeps no pair of the {valid} valid pairs "
                             f"in {args.input}; nothing written")
        if args.quiet:
            _quiet_libraries()
        write_data(result.data, args.output, out_kind, overwrite=args.overwrite, inputs=[args.input])
        _report("gammapo select", result.counts, args.output)
        return 0

    return _run("gammapo select", build_select_parser(), body, argv)


def _hint(field: str | None, args) -> str:
    """What the user can do about a missing field, in command-line words."""
    from .select import LENGTH_COLUMNS, LOGP_COLUMNS, REFERENCE_COLUMNS

    if field in LOGP_COLUMNS + LENGTH_COLUMNS and not args.model:
        return "; --model DIR (a local causal LM) computes the log-prob and length columns"
    if field in REFERENCE_COLUMNS and not args.ref_model:
        return "; --ref-model DIR computes the ref_* columns (or use --variant reference-free)"
    if field in (args.chosen_score_field, args.rejected_score_field):
        return "; --chosen-score-field and --rejected-score-field name the score fields"
    return ""


def augment_main(argv: Sequence[str] | None = None) -> int:
    """Run ``gammapo augment``; returns the exit status (0, or 2 on a bad record or option)."""

    def body(args) -> int:
        from gammapo.data.reward_augmented import condition_text

        from .augment import augment_pairs
        from .io import write_data

        try:
            condition_text(0, args.template)
        except ConfigError as exc:
            raise UsageError(f"--template: {exc}") from None
        _, out_kind = _prepare(args)
        table = _read(args)
        if (args.filter_chosen_field is None) != (args.filter_rejected_field is None):
            raise UsageError("--filter-chosen-field and --filter-rejected-field are given together or not at all")
        if args.mode == "system":
            for i, record in enumerate(table.data):
                if isinstance(record.get("prompt"), str) and not isinstance(record.get("chosen"), list):
                    raise UsageError(f"{table.where(i)}: --mode system needs conversational prompts (lists of "
                                     "messages) and this prompt is a string; use --mode prefix, or leave --mode out "
                                     "(auto: a system message for conversations, a prefix for plain prompts)")
        result = augment_pairs(table, template=args.template, mode=args.mode, separator=args.separator,
                               chosen_score_field=args.chosen_score_field, rejected_score_field=args.rejected_score_field,
                               ties=args.ties, filter_chosen_field=args.filter_chosen_field,
                               filter_rejected_field=args.filter_rejected_field,
                               skip_invalid=args.skip_invalid, show_progress=False if args.quiet else None)
        for where, message in result.skipped:
            print(f"gammapo augment: skipped {where}: {message}", file=sys.stderr)
        c = result.counts
        if c["written"] == 0:
            raise UsageError(f"no pair of {args.input} is kept ({c['invalid']} invalid, {c['dropped_lower']} with "
                             f"{args.chosen_score_field} < {args.rejected_score_field}, {c['dropped_ties']} ties dropped); "
                             "nothing written")
        if args.quiet:
            _quiet_libraries()
        write_data(result.data, args.output, out_kind, overwrite=args.overwrite, inputs=[args.input])
        _report("gammapo augment", result.counts, args.output)
        return 0

    return _run("gammapo augment", build_augment_parser(), body, argv)
