"""Paths, the carried wheels and the child processes' environment (the parent imports no framework)."""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "scripts" / "gpu_wheels.txt"


def read_manifest(path: pathlib.Path = MANIFEST) -> list[dict]:
    """The wheels of the manifest: ``[{"file", "sha256", "bytes"}]`` (``#`` lines are comments)."""
    rows = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sha, size = line.split()
            rows.append({"file": name, "sha256": sha, "bytes": int(size)})
    return rows


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install_wheels(wheel_dir: pathlib.Path, site: pathlib.Path, manifest: pathlib.Path | None) -> dict:
    """``pip install --no-index --no-deps --target site`` of the wheels in ``wheel_dir``.

    With a manifest, exactly its wheels are installed and each must be there with its sha256; without
    one (``--manifest none``), every ``*.whl`` in the folder. Returns what happened (for the report).
    """
    info: dict = {"wheel_dir": str(wheel_dir), "site": str(site), "installed": [], "problems": []}
    if not wheel_dir.is_dir():
        info["problems"].append(f"no wheel folder {wheel_dir}: the packages already installed are used")
        return info
    if manifest is not None:
        files = []
        for row in read_manifest(manifest):
            path = wheel_dir / row["file"]
            if not path.is_file():
                info["problems"].append(f"{row['file']} is in {manifest.name} but not in {wheel_dir}")
            elif sha256(path) != row["sha256"]:
                info["problems"].append(f"{row['file']}: sha256 differs from {manifest.name}")
            else:
                files.append(path)
    else:
        files = sorted(wheel_dir.glob("*.whl"))
    if not files:
        return info
    site.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
           "--upgrade", "--target", str(site), *map(str, files)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    info["command"] = " ".join(cmd[:12]) + f" … ({len(files)} wheels)"
    if proc.returncode != 0:
        info["problems"].append("pip install failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1])
    else:
        info["installed"] = [f.name for f in files]
        sys.path.insert(0, str(site))
    return info


def conformance_shim() -> pathlib.Path:
    """A folder holding ``gammapo_conformance`` → ``conformance/`` (the name it has when installed)."""
    shim = pathlib.Path(tempfile.mkdtemp(prefix="gammapo_shim_"))
    (shim / "gammapo_conformance").symlink_to(ROOT / "conformance", target_is_directory=True)
    return shim


def child_env(site: pathlib.Path | None, shim: pathlib.Path) -> dict[str, str]:
    """The environment of every section: the checkout's packages first, then the carried wheels."""
    paths = [str(ROOT), str(ROOT / "backends"), str(shim)]
    if site is not None and site.is_dir():
        paths.append(str(site))
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1",
            "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TOKENIZERS_PARALLELISM": "false",
            "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
