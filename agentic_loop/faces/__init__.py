"""The front ends, each a thin face of `agentic_loop.runs.service`: the command line
(`cli`, `terminal`), the web app (`web`), LangGraph Server (`server`), and the background
tools of an outer agent (`background`). `drawing` draws the graph and stored runs."""
