"""The README's working-memory figure for the bundled model comes from a recorded run (issue 11, item 26)."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_cites_the_bundled_model_memory_run():
    result = json.loads((ROOT / "benchmarks" / "bundled_model_memory.json").read_text())
    assert result["model"] == "nuclei-unet" and result["benchmark"] == "out_of_core"
    readme = " ".join((ROOT / "README.md").read_text().split())
    notes = (ROOT / "benchmarks" / "bundled_model_memory.md").read_text()
    for case in result["cases"]:
        assert case["mode"] == "out_of_core" and case["slice_shape"] == [2048, 2048]
        figure = f"{round(case['growth_mib'])} MiB"
        assert figure in readme and figure in notes
    assert "bundled_model_memory.md" in readme
