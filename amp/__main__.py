"""``python -m amp COMMAND ...``: the console commands by name (``train``,
``eval``, ``compress``, ``plotconvergence``, ``gdml``); see
:func:`amp.commands.main`."""

import sys

from .commands import main

if __name__ == "__main__":
    sys.exit(main())
