"""``python -m amp.gdml``: the ``amp-gdml`` command line."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
