from agentic_loop.cli import main

main()
