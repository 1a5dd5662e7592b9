"""Console entry points.

Each command is a ``<name>_main(argv=None)`` function returning an exit code,
declared in ``pyproject.toml`` under ``[project.scripts]`` and wrapped by a
script of the same name in ``tools/``. ``python -m amp.cli COMMAND ...``
runs one by name (``compress``, ``plotconvergence``).
"""

from __future__ import annotations

import argparse
import os
import sys


def _compress_parser():
    parser = argparse.ArgumentParser(
        prog="amp-compress",
        description="Move the loose entries of an .ampdb fingerprint "
        "database into its archive.tar.gz (merging with an existing archive). "
        "Safe while other processes use the database; running it again is "
        "harmless.")
    parser.add_argument("paths", metavar="PATH", nargs="+",
                        help="an .ampdb folder, or with -r any folder; "
                        "several may be given")
    parser.add_argument("-r", "--recursive", action="store_true",
                        help="compress every .ampdb folder in or below PATH")
    parser.add_argument("-d", "--delete", action="store_true",
                        help="with -r: delete every .ampdb folder in or "
                        "below PATH instead of compressing it, after "
                        "listing them and reading 'yes' from the terminal "
                        "(Amp 1.x's option)")
    return parser


def _is_ampdb(path):
    return os.path.isdir(path) and os.path.basename(
        os.path.normpath(path)).endswith(".ampdb")


def _find_databases(path):
    """Return every .ampdb folder in or below ``path``, sorted."""
    if _is_ampdb(path):
        return [path]
    found = []
    for root, folders, _ in os.walk(path):
        for folder in sorted(folders):
            if folder.endswith(".ampdb"):
                found.append(os.path.join(root, folder))
        # An .ampdb holds no databases of its own: do not descend.
        folders[:] = sorted(f for f in folders if not f.endswith(".ampdb"))
    return sorted(found)


def compress_main(argv: list[str] | None = None) -> int:
    """Run ``amp-compress``; return the exit code (0 on success).

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name (default ``sys.argv[1:]``).
    """
    from amp.store.database import FileDatabase

    args = _compress_parser().parse_args(argv)
    if args.delete and not args.recursive:
        print("amp-compress: error: -d/--delete works only with -r "
              "(as in Amp 1.x); nothing was changed", file=sys.stderr)
        return 1
    databases = []
    # Every path is checked before any database is touched.
    for given in args.paths:
        path = os.path.normpath(given)
        if not os.path.exists(path):
            print("amp-compress: error: %s does not exist; nothing was "
                  "changed" % given, file=sys.stderr)
            return 1
        if args.recursive:
            found = _find_databases(path) if os.path.isdir(path) else []
            if not found:
                print("amp-compress: error: no .ampdb folder in or below "
                      "%s; nothing was changed" % given, file=sys.stderr)
                return 1
        elif _is_ampdb(path):
            found = [path]
        else:
            print("amp-compress: error: %s is not an .ampdb database (a "
                  "folder whose name ends in .ampdb); nothing was changed. "
                  "Use -r to compress the databases below a folder." % given,
                  file=sys.stderr)
            return 1
        databases += [d for d in found if d not in databases]
    if args.delete:
        return _delete_databases(databases)
    status, moved, before, after = 0, 0, 0, 0
    for database in databases:
        try:
            counts = FileDatabase(database).archive()
        except (OSError, ValueError) as error:
            print("amp-compress: error: %s: %s" % (database, error),
                  file=sys.stderr)
            status = 1
            continue
        dropped = (", dropped %d damaged" % counts["dropped"]
                   if counts["dropped"] else "")
        print("%s: moved %d loose entries into archive.tar.gz (%d entries "
              "in it)%s; %d bytes before, %d bytes after"
              % (database, counts["moved"], counts["entries"], dropped,
                 counts["bytes_before"], counts["bytes_after"]))
        moved += counts["moved"]
        before += counts["bytes_before"]
        after += counts["bytes_after"]
    if len(databases) > 1:
        print("total: %d databases, moved %d loose entries; %d bytes before, "
              "%d bytes after" % (len(databases), moved, before, after))
    return status


def _delete_databases(databases: list[str]) -> int:
    """``amp-compress -r -d``: list the databases, ask, delete them.

    Only what was listed is deleted, and only on the answer ``yes``; a
    database that became a link since is left alone (a link is never
    followed)."""
    print("This will permanently delete these %d .ampdb folders:"
          % len(databases))
    for database in databases:
        print("  %s" % database)
    try:
        answer = input('Type "yes" to delete them: ')
    except EOFError:
        answer = ""
    if answer.strip() != "yes":
        print("Nothing was deleted.")
        return 1
    import shutil

    status = 0
    for database in databases:
        if os.path.islink(database) or not os.path.isdir(database):
            print("amp-compress: error: %s is no longer an .ampdb folder; "
                  "left alone" % database, file=sys.stderr)
            status = 1
            continue
        shutil.rmtree(database)
        print("Deleted %s." % database)
    return status


def plotconvergence_main(argv: list[str] | None = None) -> int:
    """Run ``amp-plotconvergence``; return the exit code (0 on success).

    Plots the convergence of every training run in an Amp training log
    (this library's or Amp 1.x's) with :func:`amp.analysis.plot_convergence`.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        prog="amp-plotconvergence",
        description="Plot the loss and the energy and force RMSEs and "
        "maximum residuals against the step, for every training run in an "
        "Amp training log (<label>-log.txt).")
    parser.add_argument("logfile", metavar="LOGFILE",
                        help="the training log")
    parser.add_argument("plotfile", metavar="PLOTFILE", nargs="?",
                        default=None,
                        help="the plot file, as in Amp 1.x; its extension "
                        "gives the format (default: convergence.pdf)")
    parser.add_argument("--plotfile", dest="plotfile_option", default=None,
                        metavar="PLOTFILE", help="the same, as an option")
    args = parser.parse_args(argv)
    if args.plotfile is not None and args.plotfile_option is not None:
        parser.error("give the plot file once: PLOTFILE or --plotfile")
    plotfile = args.plotfile or args.plotfile_option or "convergence.pdf"
    try:
        from amp.analysis import plot_convergence

        plot_convergence(args.logfile, plotfile=plotfile)
    except (OSError, ValueError, ImportError) as error:
        print("amp-plotconvergence: error: %s" % error, file=sys.stderr)
        return 1
    print("%s: convergence plot written to %s" % (args.logfile, plotfile))
    return 0


_COMMANDS = {"compress": compress_main,
             "plotconvergence": plotconvergence_main}


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m amp.cli COMMAND ARGS...``; return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in _COMMANDS:
        print("usage: python -m amp.cli {%s} ..." % ",".join(_COMMANDS),
              file=sys.stderr)
        return 2
    return _COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
