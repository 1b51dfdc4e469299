r"""Complete checkpoints for :class:`~gammapo.integrations.trl.GammaPOTrainer`, and the output-folder lock.

A checkpoint folder ``checkpoint-N`` is *complete* when it holds :data:`COMPLETE_FILE`, a small JSON
record written atomically after everything else (TRL's model, optimizer, scheduler, RNG and
``trainer_state.json``, then the loss state :data:`LOSS_STATE_FILE`, itself written atomically). The
record holds the SHA-256 of the loss-state file and the loss's configuration. A crash at any point
leaves either a complete checkpoint or a folder without the record, which resume never uses:

* ``resume_from_checkpoint=True`` takes the newest complete checkpoint (and says which, and which
  newer folders it skipped as incomplete);
* an explicit folder must be complete;
* a loss-state file that does not match its recorded checksum (truncated, corrupt) makes the folder
  incomplete;
* a configuration that differs from the one recorded is an error naming the fields.

Older checkpoints are rotated only after the record is written, so ``save_total_limit`` never leaves
an incomplete checkpoint as the only one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from typing import Any

from gammapo_spec.errors import StateError

from gammapo._files import write_atomic

__all__ = ["LOSS_STATE_FILE", "COMPLETE_FILE", "LOCK_FILE", "write_atomic", "write_record", "incomplete_reason",
           "newest_complete", "loss_record", "check_record", "OutputLocked", "lock_output"]

#: File name of the loss state inside a checkpoint folder.
LOSS_STATE_FILE = "gammapo_loss_state.pt"
#: The record that marks a checkpoint folder complete (written last, atomically).
COMPLETE_FILE = "gammapo_checkpoint.json"
#: The lock file of an output folder (held while a trainer writes there).
LOCK_FILE = ".gammapo.lock"
_FORMAT = 1
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def loss_record(pair_loss: Any) -> dict[str, Any]:
    """What a checkpoint records about its loss: the class, and the config fields (or parameters)."""
    from gammapo_spec.config import GammaPOConfig

    record: dict[str, Any] = {"type": type(pair_loss).__name__}
    config = getattr(pair_loss, "config", None)
    if isinstance(config, GammaPOConfig):
        record["config"] = config.to_dict()
    params = getattr(pair_loss, "params", None)
    if isinstance(params, dict):
        record["params"] = {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool, type(None)))}
    return json.loads(json.dumps(record, default=str))


def write_record(folder: str, state_dict: dict, pair_loss: Any, global_step: int) -> None:
    """Write the loss state, then the completeness record, each atomically, into ``folder``."""
    import torch

    buf = io.BytesIO()
    torch.save(state_dict, buf)
    path = os.path.join(folder, LOSS_STATE_FILE)
    write_atomic(path, buf.getvalue())
    record = {"format": _FORMAT, "global_step": int(global_step), "loss_state_sha256": _sha256(path),
              "loss": loss_record(pair_loss)}
    write_atomic(os.path.join(folder, COMPLETE_FILE), (json.dumps(record, indent=1) + "\n").encode())


def _read_record(folder: str) -> dict[str, Any]:
    with open(os.path.join(folder, COMPLETE_FILE), encoding="utf-8") as f:
        return json.load(f)


def incomplete_reason(folder: str) -> str | None:
    """Why ``folder`` is not a complete checkpoint (``None`` when it is)."""
    if not os.path.isdir(folder):
        return "no such folder"
    try:
        record = _read_record(folder)
    except FileNotFoundError:
        return f"no {COMPLETE_FILE} (the save did not finish)"
    except (OSError, ValueError) as exc:
        return f"unreadable {COMPLETE_FILE} ({exc})"
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        return f"{COMPLETE_FILE} is not a record this version writes"
    for name in ("trainer_state.json",):
        if not os.path.isfile(os.path.join(folder, name)):
            return f"no {name}"
    path = os.path.join(folder, LOSS_STATE_FILE)
    try:
        digest = _sha256(path)
    except OSError as exc:
        return f"unreadable {LOSS_STATE_FILE} ({exc.strerror or exc})"
    if digest != record.get("loss_state_sha256"):
        return f"{LOSS_STATE_FILE} does not match its recorded checksum (truncated or corrupt)"
    return None


def newest_complete(output_dir: str) -> tuple[str | None, list[tuple[str, str]]]:
    """The newest complete ``checkpoint-N`` in ``output_dir`` and the newer ones skipped, with why."""
    try:
        names = os.listdir(output_dir)
    except OSError:
        return None, []
    steps = sorted((int(m.group(1)), n) for n in names if (m := _CHECKPOINT.match(n)))
    skipped = []
    for _, name in reversed(steps):
        folder = os.path.join(output_dir, name)
        if not os.path.isdir(folder):
            continue
        why = incomplete_reason(folder)
        if why is None:
            return folder, skipped
        skipped.append((folder, why))
    return None, skipped


def check_record(folder: str, pair_loss: Any) -> None:
    """Raise ``StateError`` naming every field where the loss now differs from the one ``folder`` recorded."""
    saved, now = _read_record(folder).get("loss", {}), loss_record(pair_loss)
    diffs = []
    if saved.get("type") != now.get("type"):
        diffs.append(("loss type", saved.get("type"), now.get("type")))
    for part in ("config", "params"):
        a, b = saved.get(part) or {}, now.get(part) or {}
        diffs += [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if diffs:
        listed = ", ".join(f"{k} (checkpoint {a!r}, now {b!r})" for k, a, b in diffs)
        raise StateError(f"{folder} was trained with another loss configuration: {listed}; resume with the "
                         "checkpoint's settings or start a new output folder", field=str(diffs[0][0]))


class OutputLocked(RuntimeError):
    """Another process is writing to the same output folder."""


def lock_output(folder: str) -> Any:
    """Take the lock of ``folder`` (created if missing) for this process; returns the open lock file,
    which holds the lock until it is closed or the process ends.

    Raises:
        OutputLocked: another process holds it (the message names the folder and that process).
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    handle = open(path, "a+", encoding="utf-8")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise OutputLocked(f"{folder} is in use by {holder}; wait for it to finish or choose another output "
                           "folder") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()}\n")
    handle.flush()
    return handle
