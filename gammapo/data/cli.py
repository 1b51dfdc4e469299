"""The ``gammapo select`` and ``gammapo augment`` command lines.

::

    gammapo select IN OUT --fraction 0.4 [--variant reference-free|reference-based] [--weight 1.0]
                          [--baseline explicit-margin|implicit-margin] [--model PATH [--ref-model PATH]]
    gammapo augment IN OUT [--template TEXT] [--mode system|prefix] [--ties keep|drop]

IN is a JSONL file or a ``datasets`` directory (``save_to_disk``); OUT is written as the same kind.
The counts go to stderr as one line (``read N, invalid N, ... written N``); a bad record stops the
run with its place and field (exit status 2) unless ``--skip-invalid``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from gammapo_spec.alignment_potential import METRICS, VARIANTS
from gammapo_spec.errors import GammaPOError
from gammapo_spec.reward_augmented import DEFAULT_TEMPLATE, MODES

__all__ = ["select_main", "augment_main", "build_select_parser", "build_augment_parser"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="a JSONL file or a `datasets` directory (save_to_disk)")
    p.add_argument("output", metavar="OUT", help="where to write the result (same kind as IN)")
    p.add_argument("--split", help="the split of a saved DatasetDict")
    p.add_argument("--chosen-score-field", default="score_chosen", help="field of s_w (default: score_chosen)")
    p.add_argument("--rejected-score-field", default="score_rejected", help="field of s_l (default: score_rejected)")
    p.add_argument("--skip-invalid", action="store_true", help="count and skip bad records instead of stopping")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_select_parser() -> argparse.ArgumentParser:
    """The ``gammapo select`` argument parser."""
    p = argparse.ArgumentParser(prog="gammapo select", description="Keep the top fraction of preference pairs by alignment potential.")
    _common(p)
    p.add_argument("--fraction", type=float, required=True, help="fraction of pairs to keep, in (0, 1]")
    p.add_argument("--variant", choices=VARIANTS, default="reference-free", help="implicit margin (default: reference-free)")
    p.add_argument("--weight", type=float, default=1.0, help="weight w of the implicit term (default 1)")
    p.add_argument("--baseline", choices=[m for m in METRICS if m != "alignment-potential"],
                   help="rank by a baseline metric instead of the alignment potential")
    p.add_argument("--score-field", help="also write each kept pair's score under this field")
    p.add_argument("--model", help="local causal LM directory: fills missing chosen/rejected log-probs and lengths")
    p.add_argument("--ref-model", help="local reference model directory: fills missing ref_* log-probs")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass with --model (default 8)")
    return p


def build_augment_parser() -> argparse.ArgumentParser:
    """The ``gammapo augment`` argument parser."""
    p = argparse.ArgumentParser(prog="gammapo augment", description="Reward-augmented relabelling: two score-conditioned pairs per pair.")
    _common(p)
    p.add_argument("--template", default=DEFAULT_TEMPLATE, help="condition template with a {score} field")
    p.add_argument("--mode", choices=MODES, default="system",
                   help="system message (conversational records) or prefix of the prompt (default: system)")
    p.add_argument("--separator", default="\n\n", help="between the condition and the text it precedes")
    p.add_argument("--ties", choices=("keep", "drop"), default="keep", help="pairs with s_w == s_l (default: keep)")
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


def _run(prog: str, body, argv) -> int:
    try:
        return body(argv)
    except GammaPOError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


def select_main(argv: Sequence[str] | None = None) -> int:
    """Run ``gammapo select``; returns the exit status (0, or 2 on a bad record or option)."""
    args = build_select_parser().parse_args(argv)

    def body(_):
        from .io import read_data, write_data
        from .logprobs import fill_logprobs, load_model
        from .select import select_pairs

        show = False if args.quiet else None
        if args.quiet:
            _quiet_libraries()
        table = read_data(args.input, split=args.split, skip_invalid=args.skip_invalid)
        metric = args.baseline or "alignment-potential"
        if args.model or args.ref_model:
            for path, prefix in ((args.model, ""), (args.ref_model, "ref_")):
                if path is None:
                    continue
                if prefix == "ref_" and args.variant != "reference-based":
                    print("gammapo select: note: --ref-model is used by --variant reference-based only", file=sys.stderr)
                    continue
                model, tok = load_model(path)
                if args.quiet:
                    _quiet_libraries()
                table.data, computed = fill_logprobs(table, model, tok, prefix=prefix, batch_size=args.batch_size,
                                                     show_progress=show)
                print(f"gammapo select: computed {prefix or 'policy '}log-probs for {computed} records with {path}", file=sys.stderr)
        result = select_pairs(table, fraction=args.fraction, metric=metric, variant=args.variant, weight=args.weight,
                              chosen_score_field=args.chosen_score_field, rejected_score_field=args.rejected_score_field,
                              skip_invalid=args.skip_invalid, score_field=args.score_field)
        for where, message in result.skipped:
            print(f"gammapo select: skipped {where}: {message}", file=sys.stderr)
        write_data(result.data, args.output, table.kind, overwrite=args.overwrite, inputs=[args.input])
        _report("gammapo select", result.counts, args.output)
        return 0

    return _run("gammapo select", body, argv)


def augment_main(argv: Sequence[str] | None = None) -> int:
    """Run ``gammapo augment``; returns the exit status (0, or 2 on a bad record or option)."""
    args = build_augment_parser().parse_args(argv)

    def body(_):
        from .augment import augment_pairs
        from .io import read_data, write_data

        if args.quiet:
            _quiet_libraries()
        table = read_data(args.input, split=args.split, skip_invalid=args.skip_invalid)
        result = augment_pairs(table, template=args.template, mode=args.mode, separator=args.separator,
                               chosen_score_field=args.chosen_score_field, rejected_score_field=args.rejected_score_field,
                               ties=args.ties, skip_invalid=args.skip_invalid, show_progress=False if args.quiet else None)
        for where, message in result.skipped:
            print(f"gammapo augment: skipped {where}: {message}", file=sys.stderr)
        write_data(result.data, args.output, table.kind, overwrite=args.overwrite, inputs=[args.input])
        _report("gammapo augment", result.counts, args.output)
        return 0

    return _run("gammapo augment", body, argv)
