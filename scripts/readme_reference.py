"""Write the README's command reference (every command and every option, once, from the CLI itself) and
its table of contents (from its headings).

The section between the two markers in README.md is made by this script from `ledger.cli` (click's own
usage line and help records, as `--help` prints them), as sqlite-utils makes its CLI reference with cog,
so the reference cannot drift from the code: tests/test_docs.py fails when it is out of date.

    .venv/bin/python scripts/readme_reference.py           # rewrite the section
    .venv/bin/python scripts/readme_reference.py --check   # exit 1 if it is out of date
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN = "<!-- reference: made by scripts/readme_reference.py from the CLI; do not edit by hand -->"
END = "<!-- /reference -->"
COMMAND = ".venv/bin/python scripts/readme_reference.py"
CONTENTS = "<!-- contents: made by scripts/readme_reference.py from the headings; do not edit by hand -->"
CONTENTS_END = "<!-- /contents -->"


def _cell(text):
    """Markdown table cell text: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def render():
    """The section's text, markers included."""
    sys.path.insert(0, str(ROOT))  # the ledger of this tree, also when it is not installed
    import click
    from ledger.cli import cli

    parts = [BEGIN, ""]
    group = click.Context(cli, info_name="ledger")
    for name in cli.list_commands(group):
        command = cli.get_command(group, name)
        ctx = click.Context(command, info_name=name, parent=group)
        usage = " ".join(command.collect_usage_pieces(ctx))
        parts += [f"#### `ledger {name}`", "", f"`ledger {name} {usage}`", "",
                  _cell(command.get_short_help_str(limit=300)), ""]
        rows = [param.get_help_record(ctx) for param in command.get_params(ctx)
                if isinstance(param, click.Option) and param is not command.get_help_option(ctx) and param.get_help_record(ctx)]
        if rows:
            parts += ["| option | what it does |", "|---|---|"]
            parts += [f"| `{_cell(flags)}` | {_cell(text)} |" for flags, text in rows]
            parts.append("")
    parts.append(END)
    return "\n".join(parts)


def headings(text):
    """(level, title, anchor) of every `##`/`###` heading outside code blocks; anchors as GitHub makes them
    (lower case, punctuation dropped, spaces as hyphens, `-N` for a repeat)."""
    found, seen, fenced = [], {}, False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"(#{1,6}) (.+)", line)
        if match:
            title = match.group(2).strip()
            anchor = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            found.append((len(match.group(1)), title, f"{anchor}-{count}" if count else anchor))
    return found


def contents(text):
    """The table of contents: each `##` section, its `###` ones on the same line."""
    sections = []
    for level, title, anchor in headings(text):
        if level == 2:
            sections.append((f"[{title}](#{anchor})", []))
        elif level == 3 and sections:
            sections[-1][1].append(f"[{title}](#{anchor})")
    lines = [f"- {top}: {' · '.join(subs)}" if subs else f"- {top}" for top, subs in sections]
    return "\n".join([CONTENTS, *lines, CONTENTS_END])


def rewritten(text):
    """README text with the reference and the table of contents made anew."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    text = text[:start] + render() + text[end:]
    start, end = text.index(CONTENTS), text.index(CONTENTS_END) + len(CONTENTS_END)
    return text[:start] + contents(text) + text[end:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README's reference is out of date")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    new = rewritten(text)
    if args.check:
        if new != text:
            print(f"README.md's command reference or contents are out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    print("wrote README.md's command reference and table of contents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
