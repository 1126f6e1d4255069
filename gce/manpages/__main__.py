"""python -m gce.manpages DIR | --completion DIR: write the manual pages or the completion scripts."""

from __future__ import annotations

import argparse
from pathlib import Path


def write(directory: Path, files: dict[str, str]) -> None:
    """Write FILES ({name: text}) into DIRECTORY."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(files.items()):
        (directory / name).write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gce.manpages", description=__doc__)
    parser.add_argument("directory", type=Path, help="where to write (man/ or packaging/completion/)")
    parser.add_argument("--completion", action="store_true", help="write the shell completion scripts instead")
    args = parser.parse_args(argv)
    if args.completion:
        from gce.manpages.completion import all_scripts

        write(args.directory, all_scripts())
    else:
        from gce.manpages.pages import all_pages

        pages = all_pages()
        for stale in args.directory.glob("gce*.[15]"):  # the page of a command that is gone
            if stale.name not in pages:
                stale.unlink()
        write(args.directory, pages)


if __name__ == "__main__":
    main()
