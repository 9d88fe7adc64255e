"""Finding the Java and Maven the local stack needs, with errors that say what to install."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ringwatch.stack.exceptions import PrerequisiteMissingError

# Neo4j 5.26 and Kafka 3.9 both run on Java 17; Neo4j 5.26 also accepts 21.
MIN_JAVA_MAJOR = 17
_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


@dataclass(frozen=True)
class Toolchain:
    java: Path
    java_major: int
    mvn: Path


def _java_major(java: Path) -> int:
    # `java -version` prints to stderr, e.g. 'openjdk version "17.0.15" 2025-04-15'.
    proc = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False)
    match = _JAVA_VERSION.search(proc.stderr + proc.stdout)
    if proc.returncode != 0 or match is None:
        raise PrerequisiteMissingError(f"could not read the Java version from '{java} -version'")
    major = int(match.group(1))
    # Java 8 and older report "1.8".
    return int(match.group(2) or 0) if major == 1 else major


def find_java() -> tuple[Path, int]:
    found = shutil.which("java")
    if found is None:
        raise PrerequisiteMissingError(
            "Java not found on PATH; install OpenJDK 17 "
            "(Debian/Ubuntu: apt-get install openjdk-17-jdk-headless) or run 'make setup'"
        )
    java = Path(found)
    major = _java_major(java)
    if major < MIN_JAVA_MAJOR:
        raise PrerequisiteMissingError(
            f"Java {major} found at {java}, but the stack needs Java {MIN_JAVA_MAJOR} or newer"
        )
    return java, major


def find_maven() -> Path:
    found = shutil.which("mvn")
    if found is None:
        raise PrerequisiteMissingError(
            "Maven not found on PATH; install it (Debian/Ubuntu: apt-get install maven) "
            "or run 'make setup'"
        )
    return Path(found)


def find_toolchain() -> Toolchain:
    """Java first: without it Maven cannot run either."""
    java, major = find_java()
    return Toolchain(java=java, java_major=major, mvn=find_maven())
