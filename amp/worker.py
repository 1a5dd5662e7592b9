"""Worker process entry point: ``python -m amp.worker worker|launch ...``.

Kept apart from :mod:`amp.parallel` so that running it does not re-import
a module the package may already have imported (see :mod:`amp._workers`
for what runs; the secret is read from stdin, never from the arguments).
"""

from amp._workers import main

if __name__ == "__main__":
    main()
