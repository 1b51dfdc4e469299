"""Reward-augmented relabelling of a conversational preference set, and conditioning at inference.

Builds a scored preference set in TRL's conversational format, saves it as a Hugging Face
``datasets`` directory, and runs

    gammapo augment IN OUT --mode system --template "...{score}..."

which keeps the pairs with s_w >= s_l (ties kept: they become two mirrored pairs with the same
condition) and emits two pairs per pair: conditioned on s_w, chosen > rejected; conditioned on s_l,
rejected > chosen. The result trains with any direct-alignment loss (e.g. ``gammapo train``). At
inference, condition the prompt on the top score with :func:`condition_prompt`.

Run:
    python examples/augment_data.py                 # in a temporary directory
    python examples/augment_data.py --out /tmp/aug  # keep the files

Needs ``datasets``.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from gammapo.data.cli import augment_main
from gammapo.data.io import read_data
from gammapo.data.reward_augmented import condition_prompt

TEMPLATE = "Write a response whose quality score is {score} on a scale of 1 to 10."


def preferences() -> list[dict]:
    def msg(role, text):
        return [{"role": role, "content": text}]

    rows = []
    for i, (sw, sl) in enumerate([(9, 3), (7, 7), (4, 8), (10, 6)]):
        rows.append({"id": i, "prompt": msg("user", f"Question {i}?"), "chosen": msg("assistant", f"Good answer {i}."),
                     "rejected": msg("assistant", f"Weak answer {i}."), "score_chosen": sw, "score_rejected": sl})
    return rows


def main(argv: list[str] | None = None) -> int:
    import datasets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory for the files (default: a temporary one)")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="gammapo-augment-")
    os.makedirs(out, exist_ok=True)
    src, dst = os.path.join(out, "prefs"), os.path.join(out, "augmented")
    datasets.Dataset.from_list(preferences()).save_to_disk(src)

    status = augment_main([src, dst, "--mode", "system", "--template", TEMPLATE, "--overwrite", "--quiet"])
    if status:
        return status
    for r in read_data(dst).data:
        print(f"id {r['id']}  condition {r['condition_score']:>2}  [{r['prompt'][0]['content']}]  "
              f"chosen: {r['chosen'][0]['content']!r}")
    print("inference prompt:", condition_prompt([{"role": "user", "content": "A new question?"}], 10, template=TEMPLATE))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
