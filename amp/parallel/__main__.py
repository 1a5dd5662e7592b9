"""Worker process entry point: ``python -m amp.parallel worker|launch ...``.

What runs is :func:`amp.parallel.worker.main`; the run's secret is read
from stdin, never from the arguments.
"""

from amp.parallel.worker import main

if __name__ == "__main__":
    main()
