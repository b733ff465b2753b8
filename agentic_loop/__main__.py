import sys

try:
    from agentic_loop.faces.cli import main
except KeyboardInterrupt:  # a Ctrl-C while the CLI still loads
    print("\nStopped before anything ran; nothing was stored.", file=sys.stderr)
    sys.exit(130)

main()
