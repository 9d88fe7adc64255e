"""Resolving each server's runtime classpath from Maven Central into a cache.

Each server has a pom under ``ringwatch/stack/poms``. Its dependencies are copied with Maven's
``dependency:copy-dependencies`` into ``<home>/lib/<server>``; a marker holding the pom's digest
makes a second ``up`` reuse the jars, and a changed pom re-resolves them. Maven's own download
cache stays in the user's ``~/.m2``, so even a fresh stack home copies locally.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from ringwatch.stack.exceptions import ArtifactResolutionError

MARKER = ".resolved"


def pom_text(server: str) -> str:
    return resources.files("ringwatch.stack").joinpath("poms", f"{server}.pom.xml").read_text()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def is_resolved(lib_dir: Path, server: str) -> bool:
    marker = lib_dir / MARKER
    return marker.is_file() and marker.read_text().strip() == _digest(pom_text(server))


def resolve(server: str, lib_dir: Path, *, mvn: Path, log_dir: Path) -> bool:
    """Make ``lib_dir`` hold the server's jars. Returns True when Maven had to run."""
    if is_resolved(lib_dir, server):
        return False
    text = pom_text(server)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"maven-{server}.log"
    staging = lib_dir.with_name(lib_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    pom = staging / "pom.xml"
    pom.write_text(text)
    cmd = [
        str(mvn),
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        # GDS ships jars with generic names (core, algo, ...): keep their group in the file name.
        "-Dmdep.prependGroupId=true",
        f"-DoutputDirectory={staging}",
    ]
    with log_path.open("w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise ArtifactResolutionError(
            f"Maven could not resolve the {server} jars (exit {proc.returncode}); see {log_path}"
        )
    pom.unlink()
    # Swap in the complete set only, so an interrupted resolve never leaves half a classpath.
    shutil.rmtree(lib_dir, ignore_errors=True)
    staging.rename(lib_dir)
    (lib_dir / MARKER).write_text(_digest(text) + "\n")
    return True


def jar_version(lib_dir: Path, prefix: str) -> str | None:
    """The version in a jar name: ``org.neo4j.neo4j-5.26.24.jar``, prefix ``org.neo4j.neo4j-``."""
    for jar in sorted(lib_dir.glob(f"{prefix}*.jar")):
        rest = jar.name[len(prefix) : -len(".jar")]
        if rest and rest[0].isdigit():
            return rest
    return None
