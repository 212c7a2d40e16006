#!/usr/bin/env python3
"""clvae's manual pages and shell completions, generated at build time from one source: the built
program's own help (`clvae --help`, `clvae <command> --help`).

What a command takes is what its help shows: the usage line(s) and the option rows ("  -e, --epochs
N   text"). An option's value is completed by its metavar: FILE (or a name with a dot, grid.png) as
a file, DIR as a directory, a|b as those words, and any other by the words its help text starts
with, once parentheses and [defaults] are dropped: "bernoulli (...) or logistic (...)" gives
bernoulli and logistic, "...: none (...) or center" none and center, "constant, cosine or step"
the three. An option shown with a metavar but no words takes the words of the option of the same
name in another command (tune's --likelihood L has train's).

The manual pages are help2man's rendering of that help (with the usage line written as help2man
reads it), plus sections that the help cannot give: ENVIRONMENT and EXIT STATUS from the tables of
docs/commands.md (whose exit statuses are checked against include/base/error.h here), EXAMPLES
from the same page's command blocks, SEE ALSO from the list of commands, and man/*.h2m.

  clvae_help.py emit CLVAE COMMAND --help|--version    the help as help2man reads it
  clvae_help.py man CLVAE COMMAND OUT.1 HELP2MAN SOURCE_ROOT    one page ("clvae" for clvae(1))
  clvae_help.py bash CLVAE OUT | zsh CLVAE OUT           a completion script
  clvae_help.py json CLVAE                               the commands and options, parsed
"""

import datetime
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import tempfile

ROW = re.compile(r"^  (?:(-[A-Za-z0-9]), )?\s*(--[a-z][a-z0-9-]*)(?: ([^\s]+))?(?:\s{2,}(.*))?$")
CONTINUATION = re.compile(r"^ {10,}(\S.*)$")
OPTION = re.compile(r"^(--[a-z][a-z0-9-]*|-[A-Za-z0-9])$")
WORD = re.compile(r"^[a-z][a-z0-9_-]*$")


def fail(message):
    sys.exit(f"clvae_help.py: {message}")


def output(clvae, *args):
    """stdout of `clvae args` (which must exit 0)."""
    p = subprocess.run([clvae, *args], capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"`{clvae} {' '.join(args)}` exited {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def commands(clvae):
    """[(name, summary)] of `clvae --help`'s "commands:" block."""
    found, inside = [], False
    for line in output(clvae, "--help").splitlines():
        if line == "commands:":
            inside = True
        elif inside and not line.strip():
            break
        elif inside:
            m = re.match(r"^  ([a-z][a-z0-9-]*)\s+(\S.*)$", line)
            if not m:
                fail(f"clvae --help: not a command line: {line!r}")
            found.append((m.group(1), m.group(2)))
    if not found:
        fail("clvae --help lists no commands")
    return found


def usage_lines(text):
    """The usage: its first line and those below it up to a blank line, as one line."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("usage: "):
        fail(f"help does not start with 'usage: ': {text[:60]!r}")
    usage = [lines[0][len("usage: "):]]
    for line in lines[1:]:
        if not line.strip():
            break
        usage.append(line.strip())
    return " ".join(usage)


def classify(metavar):
    """What a metavar asks for: "file", "dir", ("choice", words) or "value" (typed)."""
    if metavar is None:
        return "flag"
    alternatives = metavar.split("|")
    if len(alternatives) > 1 and all(WORD.match(a) for a in alternatives):
        return ("choice", alternatives)
    if metavar.endswith("FILE") or "." in metavar:
        return "file"
    if metavar.endswith("DIR"):
        return "dir"
    return "value"


def leading_words(text):
    """The words a value's help starts with ("a (x) or b (y)  [a]" -> [a, b]), or None."""
    while True:
        stripped = re.sub(r"\([^()]*\)|\[[^\[\]]*\]", "", text)
        if stripped == text:
            break
        text = stripped
    text = " ".join(text.split())
    text = text.rsplit(": ", 1)[-1]
    m = re.fullmatch(r"([a-z][\w-]*(?:, [a-z][\w-]*)*),? or ([a-z][\w-]*)", text)
    return m.group(1).split(", ") + [m.group(2)] if m else None


def parse_help(text):
    """The options a help shows: [{short, long, metavar, help, kind, words}], rows first."""
    options, row = [], None
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            row = {"short": m.group(1), "long": m.group(2), "metavar": m.group(3),
                   "help": m.group(4) or ""}
            options.append(row)
        elif row is not None and CONTINUATION.match(line):
            row["help"] += " " + CONTINUATION.match(line).group(1)
        else:
            row = None
    # The usage: "[--seed S]", "-o grid.png", "[--images]" (a flag: its group closes on it).
    tokens = [t for t in usage_lines(text).split()[2:] if t != "|"]
    for i, token in enumerate(tokens):
        name = token.strip("[]")
        if not OPTION.match(name):
            continue
        metavar = None
        if not token.endswith("]") and i + 1 < len(tokens):
            nxt = tokens[i + 1].strip("[]")
            if not nxt.startswith("-") and nxt != "options":
                metavar = nxt
        if any(name in (o["short"], o["long"]) for o in options):
            continue
        long_form = name.startswith("--")
        options.append({"short": None if long_form else name, "long": name if long_form else None,
                        "metavar": metavar, "help": ""})
    # `clvae <command> --help` (the top-level help's last line) holds for every command.
    if not any(o["long"] == "--help" for o in options):
        options.append({"short": None, "long": "--help", "metavar": None, "help": "show this help"})
    for o in options:
        o["kind"] = classify(o["metavar"])
        o["words"] = None
        if isinstance(o["kind"], tuple):
            o["kind"], o["words"] = o["kind"]
        elif o["kind"] == "value" and o["help"]:
            o["words"] = leading_words(o["help"])
            o["kind"] = "choice" if o["words"] else "value"
    return options


def model(clvae):
    """{"version", "commands": [{name, summary, options}]}, with words shared by name."""
    version = output(clvae, "--version").split()[-1]
    cmds = [{"name": n, "summary": s, "options": parse_help(output(clvae, n, "--help"))}
            for n, s in commands(clvae)]
    words = {}
    for c in cmds:
        for o in c["options"]:
            if o["words"] and o["long"]:
                words.setdefault(o["long"], o["words"])
    for c in cmds:
        for o in c["options"]:
            if o["kind"] == "value" and o["long"] in words:
                o["kind"], o["words"] = "choice", words[o["long"]]
    return {"version": version, "commands": cmds}


# ---- help2man --------------------------------------------------------------------------------

def emit(clvae, command, what):
    """The help of `clvae [command]` as help2man reads it: "Usage:" on one line, "Options:"
    above the option rows; the version as "clvae-COMMAND VERSION"."""
    args = [command] if command != "clvae" else []
    if what == "--version":
        version = output(clvae, "--version").split()[-1]
        print(f"{command if command == 'clvae' else 'clvae-' + command} {version}")
        return
    text = output(clvae, *args, "--help")
    lines = text.splitlines()
    usage = usage_lines(text)
    rest = lines[len(usage_lines_raw(lines)):]
    out = [f"Usage: {usage}"]
    headed = False
    for line in rest:
        if line == "commands:":
            line = "Commands:"
        if not headed and ROW.match(line):
            out.append("Options:")
            headed = True
        out.append(line)
    print("\n".join(out))


def usage_lines_raw(lines):
    taken = []
    for line in lines:
        if taken and not line.strip():
            break
        taken.append(line)
    return taken


def roff_text(text):
    """Markdown inline text as roff: `code` bold, [text](link) as its text, dashes escaped."""
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = re.sub(r"`([^`]+)`", r"\\fB\1\\fR", text)
    return text


def roff_line(text):
    """A line of text that roff does not take for a request."""
    return "\\&" + text if text[:1] in (".", "'") else text


def markdown_section(markdown, title):
    """The text of docs/commands.md's "## title" section."""
    m = re.search(r"^## " + re.escape(title) + r"\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    if not m:
        fail(f"docs/commands.md has no section '## {title}'")
    return m.group(1)


def table_rows(section):
    """A markdown table's rows (cells), header and rule left out."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|")]
    return rows[2:]


def exit_statuses(markdown, error_h):
    """EXIT STATUS: docs/commands.md's table, which must hold every value of error.h's enum."""
    rows = table_rows(markdown_section(markdown, "Exit status"))
    table = {r[0] for r in rows}
    enum = re.search(r"enum clvae_exit \{(.*?)\};", error_h, re.S)
    if not enum:
        fail("include/base/error.h has no enum clvae_exit")
    values = re.findall(r"CLVAE_EXIT_\w+ = (\d+)", enum.group(1))
    missing = [v for v in values if v not in table]
    if missing or not values:
        fail(f"docs/commands.md's exit-status table lacks {missing} of include/base/error.h")
    return "".join(f".TP\n.B {r[0]}\n{roff_text(r[1])}\n" for r in rows)


def environment(markdown):
    """ENVIRONMENT: docs/commands.md's table of variables, then the paragraphs below it."""
    section = markdown_section(markdown, "Environment variables")
    out = ""
    for name, values, effect in table_rows(section):
        out += f".TP\n{roff_text(name)}\n({roff_text(values)}) {roff_text(effect)}\n"
    after = [p for p in section.split("\n\n") if p.strip() and not p.lstrip().startswith("|")]
    for paragraph in after:
        out += ".PP\n" + roff_text(" ".join(paragraph.split())) + "\n"
    return out


def examples(markdown, command):
    """EXAMPLES: the command lines of docs/commands.md's blocks that run command (all of them
    for clvae(1)), ./build/clvae as the installed clvae."""
    blocks = re.findall(r"^```(?:sh)?\n(.*?)^```", markdown_section(markdown, "The subcommands"),
                        re.M | re.S)
    lines = []
    for block in blocks:
        for line in block.splitlines():
            line = re.sub(r"^\./build/clvae\b", "clvae", line)
            if command == "clvae" or re.match(r"clvae " + re.escape(command) + r"\b", line):
                lines.append(line)
    if not lines:
        return ""
    return ".nf\n" + "".join(roff_line(roff_text(line)) + "\n" for line in lines) + ".fi\n"


def see_also(pages, page):
    """SEE ALSO: the other pages, comma-separated, and where the documentation is installed."""
    others = [p for p in pages if p != page]
    refs = "".join(f".BR {p} (1){',' if i + 1 < len(others) else ''}\n"
                   for i, p in enumerate(others))
    return refs + ".PP\nThe full documentation: README.md and docs/ in the doc directory " \
                  "(share/doc/clvae under the prefix clvae is installed to).\n"


def man(clvae, command, out, help2man, root):
    """One page: help2man over emit's help, with the generated sections and man/*.h2m."""
    cmds = commands(clvae)
    names = [n for n, _ in cmds]
    if command != "clvae" and command not in names:
        fail(f"{command}: not a command of `clvae --help` ({', '.join(names)}); reconfigure")
    with open(os.path.join(root, "docs", "commands.md"), encoding="utf-8") as f:
        markdown = f.read()
    with open(os.path.join(root, "include", "base", "error.h"), encoding="utf-8") as f:
        error_h = f.read()
    page = command if command == "clvae" else "clvae-" + command
    version = output(clvae, "--version").split()[-1]
    others = ["clvae"] + ["clvae-" + n for n in names]
    sections = {
        "ENVIRONMENT": environment(markdown),
        "EXIT STATUS": exit_statuses(markdown, error_h),
        "EXAMPLES": examples(markdown, command),
        "SEE ALSO": see_also(others, page),
    }
    include = "".join(f"[{name}]\n{body}\n" for name, body in sections.items() if body)
    summary = dict(cmds).get(command, "a variational autoencoder trainer for any OpenCL device")
    with tempfile.NamedTemporaryFile("w", suffix=".h2m", delete=False) as f:
        f.write(include)
        generated = f.name
    try:
        me = os.path.abspath(__file__)
        executable = " ".join(shlex.quote(a) for a in [sys.executable, me, "emit", clvae, command])
        args = [help2man, "--no-info", "--section=1", f"--name={summary}",
                "--manual=clvae Manual", f"--source=clvae {version}",
                "--help-option=--help", "--version-option=--version",
                f"--include={generated}",
                f"--opt-include={os.path.join(root, 'man', page + '.h2m')}",
                f"--output={generated}.1", executable]
        p = subprocess.run(args, capture_output=True, text=True)
        if p.returncode != 0:
            fail(f"help2man for {page}: {p.stderr.strip()}")
        with open(generated + ".1", encoding="utf-8") as f:
            roff = f.read()
    finally:
        for path in (generated, generated + ".1"):
            if os.path.lexists(path):
                os.unlink(path)
    # The date as mandoc reads it (help2man writes "December 2026"); SOURCE_DATE_EPOCH if set.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
            else datetime.datetime.now())
    # .nh: no hyphenation, which would split option names (--back-\nground) at line ends.
    roff = re.sub(r'^(\.TH \S+ "1") "[^"]*"(.*)$', r'\1 "' + when.strftime("%Y-%m-%d") + r'"\2\n.nh',
                  roff, count=1, flags=re.M)
    write(out, roff)


# ---- completions -----------------------------------------------------------------------------

def names_of(o):
    return [n for n in (o["short"], o["long"]) if n]


def bash(m):
    """A bash completion script: _clvae, registered for clvae."""
    names = [c["name"] for c in m["commands"]]
    out = [f"# bash completion for clvae {m['version']}: generated by tools/clvae_help.py from",
           "# `clvae --help` and `clvae <command> --help`; do not edit.",
           "",
           "_clvae_files()",
           "{",
           "    compopt -o filenames 2>/dev/null",
           '    mapfile -t COMPREPLY < <(compgen -f -- "$cur")',
           "}",
           "",
           "_clvae_dirs()",
           "{",
           "    compopt -o filenames 2>/dev/null",
           '    mapfile -t COMPREPLY < <(compgen -d -- "$cur")',
           "}",
           "",
           "_clvae()",
           "{",
           "    local cword=$COMP_CWORD cur=${COMP_WORDS[COMP_CWORD]} prev=",
           "    ((cword > 0)) && prev=${COMP_WORDS[cword - 1]}",
           "    # --option=value: bash splits the word at '='.",
           "    if [[ $cur == = ]]; then",
           "        cur=",
           "    elif [[ $prev == = ]] && ((cword > 1)); then",
           "        prev=${COMP_WORDS[cword - 2]}",
           "    fi",
           "    COMPREPLY=()",
           "    if ((cword == 1)); then",
           f'        mapfile -t COMPREPLY < <(compgen -W "{" ".join(names)} --help --version" '
           '-- "$cur")',
           "        return",
           "    fi",
           "    local opts",
           '    case "${COMP_WORDS[1]}" in']
    for c in m["commands"]:
        out.append(f"    {c['name']})")
        out.append('        case "$prev" in')
        by_case = {}
        for o in c["options"]:
            if o["kind"] == "flag":
                continue
            if o["kind"] == "choice":
                action = ('mapfile -t COMPREPLY < <(compgen -W "' + " ".join(o["words"]) +
                          '" -- "$cur")')
            elif o["kind"] == "file":
                action = "_clvae_files"
            elif o["kind"] == "dir":
                action = "_clvae_dirs"
            else:
                action = ":"  # a value to type
            by_case.setdefault(action, []).extend(names_of(o))
        for action, opt_names in by_case.items():
            out.append(f"        {'|'.join(opt_names)})")
            out.append(f"            {action}")
            out.append("            return ;;")
        out.append("        esac")
        opts = " ".join(n for o in c["options"] for n in names_of(o))
        out.append(f'        opts="{opts}" ;;')
    out += ["    *) return ;;",
            "    esac",
            '    mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")',
            "}",
            "",
            "complete -F _clvae clvae",
            ""]
    return "\n".join(out)


def zsh_quote(text):
    """A description for _arguments/_describe: one line, without what they would parse."""
    text = re.sub(r"\s+", " ", re.sub(r"\([^()]*\)|\[[^\[\]]*\]", "", text)).strip()
    text = text.replace("\\", "").replace("'", "").replace("[", "").replace("]", "")
    text = re.sub(r"\s+([,;.])", r"\1", text).replace(":", "\\:")
    return text if len(text) <= 70 else text[:70].rsplit(" ", 1)[0].rstrip(",;") + " ..."


def zsh(m):
    """A zsh completion function (#compdef clvae) over _arguments."""
    out = [f"#compdef clvae",
           f"# zsh completion for clvae {m['version']}: generated by tools/clvae_help.py from",
           "# `clvae --help` and `clvae <command> --help`; do not edit.",
           "",
           "_clvae() {",
           "    local -a commands",
           "    commands=("]
    for c in m["commands"]:
        out.append(f"        '{c['name']}:{zsh_quote(c['summary'])}'")
    out += ["    )",
            "    if (( CURRENT == 2 )); then",
            "        _describe -t commands 'clvae command' commands",
            "        _arguments '--help[show the commands]' '--version[show the version]'",
            "        return",
            "    fi",
            "    local cmd=${words[2]}",
            "    shift words",
            "    (( CURRENT-- ))",
            "    case $cmd in"]
    for c in m["commands"]:
        out.append(f"    {c['name']})")
        out.append("        _arguments -s \\")
        for o in c["options"]:
            names = names_of(o)
            desc = zsh_quote(o["help"]) or (o["metavar"] or o["long"] or o["short"])
            if o["kind"] == "flag":
                action = ""
            else:
                meta = zsh_quote(o["metavar"] or "value").replace(" ", "_") or "value"
                if o["kind"] == "choice":
                    action = f":{meta}:({' '.join(o['words'])})"
                elif o["kind"] == "file":
                    action = f":{meta}:_files"
                elif o["kind"] == "dir":
                    action = f":{meta}:_files -/"
                else:
                    action = f":{meta}: "
            if len(names) == 2:
                spec = f"'({' '.join(names)})'{{{','.join(names)}}}'[{desc}]{action}'"
            else:
                spec = f"'{names[0]}[{desc}]{action}'"
            out.append(f"            {spec} \\")
        out.append("        ;;")
    out += ["    esac",
            "}",
            "",
            '_clvae "$@"',
            ""]
    return "\n".join(out)


def write(path, text):
    """path's text replaced whole (a temporary file renamed over it); refuses a path that is there
    and not a regular file: renaming over /dev/null or a FIFO would replace the device."""
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        fail(f"{path}: not a regular file")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv):
    if len(argv) >= 4 and argv[1] == "emit":
        emit(argv[2], argv[3], argv[4] if len(argv) > 4 else "--help")
    elif len(argv) == 7 and argv[1] == "man":
        man(os.path.abspath(argv[2]), argv[3], argv[4], argv[5], argv[6])
    elif len(argv) == 4 and argv[1] in ("bash", "zsh"):
        m = model(argv[2])
        write(argv[3], bash(m) if argv[1] == "bash" else zsh(m))
    elif len(argv) == 3 and argv[1] == "json":
        print(json.dumps(model(argv[2]), indent=1))
    else:
        fail("usage: see the docstring of tools/clvae_help.py")


if __name__ == "__main__":
    main(sys.argv)
