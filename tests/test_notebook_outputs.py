"""What a reader sees without running the notebooks: saved pictures of today's graph, and
pictures that fall back to text where Graphviz is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ScriptedChatModel

from agentic_loop import create_agentic_loop
from agentic_loop.faces.drawing import graph_picture

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
NODES = set(create_agentic_loop(ScriptedChatModel(script=[])).get_graph().nodes) - {
    "__start__",
    "__end__",
}


def saved_graph_pictures(notebook: Path) -> list[str]:
    """The SVG outputs saved in `notebook` that draw the loop's graph (not a run)."""
    cells = json.loads(notebook.read_text())["cells"]
    pictures = [
        "".join(output["data"]["image/svg+xml"])
        for cell in cells
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
        if "image/svg+xml" in output.get("data", {})
    ]
    return [svg for svg in pictures if "<title>graph</title>" in svg]


@pytest.mark.parametrize("notebook", ["01_quickstart.ipynb", "04_tools.ipynb"])
def test_saved_graph_pictures_show_every_node_of_the_graph(notebook: str) -> None:
    pictures = saved_graph_pictures(NOTEBOOKS / notebook)
    assert pictures, f"{notebook} has no saved picture of the graph"
    for svg in pictures:
        missing = {node for node in NODES if f"<title>{node}</title>" not in svg}
        assert not missing, f"{notebook}'s saved graph lacks {sorted(missing)}: re-run it"


def test_a_picture_falls_back_to_text_where_graphviz_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    picture = graph_picture(create_agentic_loop(ScriptedChatModel(script=[])))
    assert "image/svg+xml" in picture._repr_mimebundle_()
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on it
    shown = picture._repr_mimebundle_()
    assert set(shown) == {"text/plain"}
    assert shown["text/plain"].startswith("graph TD;") or "flowchart" in shown["text/plain"]
    assert all(node in shown["text/plain"] for node in NODES)
    assert "install Graphviz" in shown["text/plain"]
