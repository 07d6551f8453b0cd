"""notebooks/training.ipynb runs top to bottom: a tiny training run, its loss curve, sample grid and an edit."""

import base64
import io
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from PIL import Image

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "training.ipynb"


def test_notebook_is_saved_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_trains_and_shows_the_sample_grid(tmp_path, monkeypatch):
    monkeypatch.setenv("PBE_TRAIN_STEPS", "4")
    monkeypatch.setenv("PBE_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [
        Image.open(io.BytesIO(base64.b64decode(o.data["image/png"])))
        for o in outputs
        if "image/png" in o.get("data", {})
    ]
    sizes = {img.size for img in images}
    assert (2 * (4 * 64 + 5 * 2), 2 * (2 * 64 + 3 * 2)) in sizes  # the sample grid, shown at 2x
    assert (2 * 3 * 64, 2 * 64) in sizes  # the exported model's edit
    assert (tmp_path / "run" / "samples" / "step_0000004.png").is_file()
    assert (tmp_path / "run" / "exported" / "model.safetensors").is_file()
