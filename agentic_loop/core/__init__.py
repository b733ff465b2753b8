"""The graph core: what flows (`state`), what is done to it (`nodes`), how the nodes connect
(`graph`, `routes`), what a run may choose (`options`) and what it tells as it goes
(`events`). It imports nothing from the run store (`agentic_loop.runs`) or the front ends
(`agentic_loop.faces`); `tests/test_layers.py` checks it."""
