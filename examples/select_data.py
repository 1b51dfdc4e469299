"""Alignment-potential data selection, end to end on a small preference file.

Writes a scored preference set (plain prompt/chosen/rejected records with annotator scores) as JSONL,
builds a tiny local causal LM from a config (no download) and saves it, then runs

    gammapo select IN OUT --select-fraction 0.4 --model MODEL

which fills the missing log-prob and length columns with the model, scores every pair by
alignment potential AP = z(s_w - s_l) - z(|c/|y_w| - r/|y_l||), and keeps the top 40%. It also
compares the selection with the paper's two baselines (explicit margin, smallest implicit margin).

Run:
    python examples/select_data.py                 # in a temporary directory
    python examples/select_data.py --out /tmp/sel  # keep the files

Needs torch and transformers (for the log-probs).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from gammapo.data.cli import select_main
from gammapo.data.io import read_data
from gammapo.data.logprobs import fill_logprobs, load_model
from gammapo.data.select import select_pairs

WORDS = ["what", "is", "red", "blue", "sky", "grass", "the", "colour", "of", "green", "yes", "no"]


def write_preferences(path: str, n: int = 40) -> None:
    """A small scored preference set: scores 1–10, some pairs reversed or tied."""
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            thing = ("sky", "grass")[i % 2]
            good, bad = ("blue", "red") if thing == "sky" else ("green", "blue")
            rec = {"id": i, "prompt": f"what is the colour of the {thing}",
                   "chosen": f"the {thing} is {good}" + " yes" * (i % 3), "rejected": f"the {thing} is {bad}",
                   "score_chosen": float(5 + (7 * i) % 6), "score_rejected": float(1 + (3 * i) % 7)}
            fh.write(json.dumps(rec) + "\n")


def save_tiny_model(path: str) -> None:
    from gammapo.train.tiny import build_model, build_tokenizer

    tok = build_tokenizer(WORDS)
    build_model(len(tok), seed=0).save_pretrained(path)
    tok.save_pretrained(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory for the files (default: a temporary one)")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="gammapo-select-")
    os.makedirs(out, exist_ok=True)
    src, dst, model = (os.path.join(out, n) for n in ("prefs.jsonl", "selected.jsonl", "tiny-lm"))
    write_preferences(src)
    save_tiny_model(model)

    status = select_main([src, dst, "--select-fraction", "0.4", "--model", model, "--score-field", "alignment_potential",
                          "--overwrite", "--quiet"])
    if status:
        return status
    chosen = read_data(dst).data
    print(f"kept {len(chosen)} of 40 pairs; ids {[r['id'] for r in chosen]}")
    for r in chosen[:3]:
        print(f"  id {r['id']:>2}  AP {r['alignment_potential']:+.3f}  scores {r['score_chosen']:.0f}/{r['score_rejected']:.0f}"
              f"  log-probs {r['chosen_logps']:.1f}/{r['rejected_logps']:.1f}")

    # the same steps through the Python API, and the paper's two baselines on the same data
    lm, tok = load_model(model)
    filled, _ = fill_logprobs(read_data(src).data, lm, tok)
    ap_ids = {r["id"] for r in chosen}
    for metric in ("alignment-potential", "explicit-margin", "implicit-margin"):
        ids = [r["id"] for r in select_pairs(filled, fraction=0.4, metric=metric).data]
        print(f"{metric:>20} keeps {len(ids)}; shared with the CLI's AP selection: {len(ap_ids & set(ids))}")
    print(f"files in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
