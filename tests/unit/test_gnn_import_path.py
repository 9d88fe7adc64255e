"""PyTorch stays out of the API's and the CLI's import path while no model is promoted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECK = """
import sys
from pathlib import Path
import ringwatch.cli
import ringwatch.graph.gnn_live
import ringwatch.service.app
from ringwatch.models.serving import promoted_model
assert promoted_model(Path(sys.argv[1])) is None
loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torch_geometric'))
print(','.join(loaded))
"""


def test_nothing_promoted_means_no_torch_in_the_process(tmp_path: Path) -> None:
    (tmp_path / "v0001").mkdir()  # a stored but unpromoted model changes nothing
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
