"""The notebooks run top to bottom (nbclient, a real kernel) on a small real transcription output, as CI runs them:
every cell without an error, every plot drawn, and the pseudo-labels notebook's export written."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def run_notebook(name: str, monkeypatch, **env: str) -> nbformat.NotebookNode:
    """Execute notebooks/<name>.ipynb in a fresh kernel (in the notebooks folder, as Jupyter opens it); the kernel
    inherits the environment, which carries the parameters. A failing cell raises CellExecutionError."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # Headless: the kernel's inline backend draws each figure with Agg into the cell's PNG output (a plain
    # MPLBACKEND=Agg would draw nothing there).
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return notebook


def outputs(notebook) -> tuple[int, str]:
    """(number of PNG images, all text output joined)."""
    images, text = 0, []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            images += "image/png" in out.get("data", {})
            text.append(out.get("text", "") + out.get("data", {}).get("text/plain", ""))
    return images, "\n".join(text)


def test_explore_output_runs_on_a_real_output(transcribed, monkeypatch):
    notebook = run_notebook("explore_output", monkeypatch, NEMOTRON_OUTPUT=str(transcribed.output))
    images, text = outputs(notebook)
    assert images == 6  # language mix, durations and throughput, WER/CER, confidence, failures, the conversation
    assert "5 recordings" in text and "(4 transcribed, 1 failed)" in text
    assert "fetch" in text and "file not found" in text  # failures by stage
    assert "agent" in text and "customer" in text  # the stereo call as a conversation
    assert "searching for" in text


def test_pseudo_labels_chooses_thresholds_and_exports(transcribed, ray_session, monkeypatch, tmp_path):
    # The export inside the kernel joins the session's Ray instead of starting a second one.
    address = ray_session.get_runtime_context().gcs_address
    notebook = run_notebook("pseudo_labels", monkeypatch, NEMOTRON_OUTPUT=str(transcribed.output),
                            NEMOTRON_EXPORT_TO=str(tmp_path / "export"), RAY_ADDRESS=address)
    images, text = outputs(notebook)
    assert images == 3  # yield against error, characters per second, what was exported
    assert "2 with a reference and a confidence" in text
    summary = json.loads((tmp_path / "export" / "export.json").read_text())["summary"]
    assert summary["format"] == "tarred" and summary["kept"] > 0
    assert f"kept        {summary['kept']} utterance(s)" in text
    assert (tmp_path / "export" / "train" / "tarred_audio_manifest.json").is_file()
