"""`audiogen info CLIP...`: the provenance a generated clip carries, and how to make it again."""

from __future__ import annotations

import argparse
import sys

from audiogen.cli import EXIT_OK, EXIT_PARTIAL, add_version_option, one_line_errors


def build_parser(prog: str = "audiogen info") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Print the provenance tags of generated clips "
                                "(seed, temperature, models and their hashes, audiogen version).")
    p.add_argument("clips", nargs="+", metavar="CLIP", help="WAV or FLAC files written by generate")
    add_version_option(p)
    return p


def bundled_change_note(tags: dict) -> str | None:
    """A warning when a clip names the bundled models but they are not the weights that made it."""
    from audiogen.clip_tags import model_hash
    from audiogen.generation import pretrained_dir

    notes = []
    for option, name in (("model", "spec"), ("vocoder", "vocoder")):
        if tags.get(option) == "bundled" and model_hash(pretrained_dir(name)) != tags.get(f"{option}_sha256"):
            notes.append(f"the bundled {option} has changed since this clip was made; the command will not "
                         "make the same clip")
    return "; ".join(notes) or None


def run(args: argparse.Namespace) -> int:
    from audiogen.clip_tags import describe_tags, read_tags

    untagged = 0
    for index, clip in enumerate(args.clips):
        tags = read_tags(clip)
        if len(args.clips) > 1:
            print(("\n" if index else "") + f"== {clip}")
        if tags is None:
            print(f"{clip}: no audiogen provenance tags (not written by generate, or written before they existed)")
            untagged += 1
            continue
        print("\n".join(describe_tags(tags)))
        note = bundled_change_note(tags)
        if note:
            print(f"note: {note}")
    return EXIT_PARTIAL if untagged else EXIT_OK


def main(argv: list[str] | None = None, prog: str = "audiogen info") -> int:
    args = build_parser(prog).parse_args(argv)
    return one_line_errors(prog, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
