#!/usr/bin/env python3
"""`meson install --destdir` of a build, checked as a Debian package would lay it out: the binary
in bin/ runs from there (clvae devices, a one-epoch train and a generate on a small data set), a
manual page per command of `clvae --help` in share/man/man1 that man renders without a warning,
the bash completion (sourced, and its function called as bash calls it: `clvae tr<TAB>`, `clvae
train --lik<TAB>`, `clvae train --likelihood <TAB>`) and the zsh completion in the places bash and
zsh look, README and LICENSE in share/doc/clvae; libclvae.so with its soname links, clvae.h alone
and clvae.pc, and docs/examples/sample.c built by `pkg-config --cflags --libs clvae` against the
DESTDIR, its samples those of `clvae generate`. Every option each command's --help shows must be
offered by both completions, and every value they offer must be one the command accepts.

Run by meson test with MESON, BUILD_ROOT, SOURCE_ROOT, CLVAE (the built binary) and MAN_PAGES (1
when help2man built the pages) set.
"""

import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402  (idx3: the synthetic data set)

passed = failed = skipped = 0


def check(label, ok, why=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"install: {label} ok")
    else:
        failed += 1
        print(f"install: FAIL {label}: {why}")
    sys.stdout.flush()
    return ok


def skip(label, why):
    global skipped
    skipped += 1
    print(f"install: SKIP {label}: {why}")


def sh(args, env=None, cwd=None, input=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(args, capture_output=True, text=True, env=full_env, cwd=cwd,
                          input=input, timeout=600)


def describe(p):
    return f"`{' '.join(p.args)}` exited {p.returncode}; stdout {p.stdout[-2000:]!r}; " \
           f"stderr {p.stderr[-2000:]!r}"


def build_options(build):
    """The build's options by name (meson introspect)."""
    p = sh([os.environ["MESON"], "introspect", build, "--buildoptions"])
    if p.returncode != 0:
        sys.exit(f"install: meson introspect: {p.stderr}")
    return {o["name"]: o["value"] for o in json.loads(p.stdout)}


def options_of(build):
    """prefix, bindir, datadir, mandir of the build."""
    opts = build_options(build)
    return opts["prefix"], opts["bindir"], opts["datadir"], opts["mandir"]


def help_options(text):
    """Every option a --help shows, read plainly: the words starting with '-' in its usage
    lines and in the option column of its rows (a line of two spaces and a dash)."""
    found, lines = set(), text.splitlines()
    usage = []
    for line in lines:
        if usage and not line.strip():
            break
        usage.append(line)
    for line in usage:
        found |= set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[A-Za-z0-9])(?![\w-])", line))
    for line in lines[len(usage):]:
        m = re.match(r"^  (-\S.*?)(?:\s{2,}|$)", line) or re.match(r"^ {6}(--\S.*?)(?:\s{2,}|$)",
                                                                  line)
        if m:
            found |= set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[A-Za-z0-9])(?![\w-])",
                                    m.group(1)))
    return found


class Bash:
    """The installed bash completion, sourced in a fresh bash for each query."""

    def __init__(self, script, cwd):
        self.script, self.cwd = script, cwd

    def complete(self, line):
        """COMPREPLY for the command line `line` (the cursor at its end), as bash splits it
        (COMP_WORDBREAKS: '=' is a word of its own)."""
        words = re.findall(r"=|[^\s=]+", line)
        if line.endswith(" "):
            words.append("")
        program = (f"source {self.script} || exit 9\n"
                   f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
                   f"COMP_CWORD={len(words) - 1}\n"
                   "_clvae clvae\n"
                   "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
        p = sh(["bash", "--norc", "--noprofile", "-c", program], cwd=self.cwd)
        if p.returncode != 0 or p.stderr:
            return None, describe(p)
        return [w for w in p.stdout.split("\n") if w], ""


def check_layout(root, bindir, datadir, mandir, commands, man_pages):
    clvae = os.path.join(root, bindir, "clvae")
    check(f"{bindir}/clvae installed, executable", os.access(clvae, os.X_OK), clvae)
    for doc in ("README.md", "LICENSE", "docs/commands.md"):
        path = os.path.join(root, datadir, "doc", "clvae", doc)
        check(f"{datadir}/doc/clvae/{doc} installed", os.path.isfile(path), path)
    man1 = os.path.join(root, mandir, "man1")
    pages = sorted(os.listdir(man1)) if os.path.isdir(man1) else []
    want = sorted(["clvae.1"] + [f"clvae-{c}.1" for c in commands])
    if man_pages:
        check(f"{mandir}/man1: clvae.1 and a page per command of clvae --help", pages == want,
              f"installed {pages}, commands give {want}")
    else:
        skip("manual pages", "help2man was not found at configure time (-Dman=auto)")
    return clvae, [os.path.join(man1, p) for p in pages]


def check_man(root, mandir, pages):
    for page in pages:
        name = os.path.basename(page)
        p = sh(["man", "--warnings", "-E", "UTF-8", "-l", page],
               env={"MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"})
        title = name[:-2]
        ok = (p.returncode == 0 and not p.stderr and "SYNOPSIS" in p.stdout and
              "EXIT STATUS" in p.stdout and "ENVIRONMENT" in p.stdout and
              re.search(r"clvae\s" + re.escape(title[6:]) if title != "clvae" else "clvae",
                        p.stdout))
        check(f"man -l {name}: renders with no groff warning, NAME to EXIT STATUS", ok,
              describe(p))
        if shutil.which("lexgrog"):
            p = sh(["lexgrog", page])
            check(f"lexgrog {name}: the NAME line parses ({p.stdout.strip()})",
                  p.returncode == 0 and f"{title} (1)" not in p.stdout and " - " in p.stdout,
                  describe(p))
    if pages:
        p = sh(["man", "-w", "clvae-train"], env={"MANPATH": os.path.join(root, mandir)})
        check("man -w clvae-train with MANPATH at the installed share/man finds the page",
              p.returncode == 0 and p.stdout.strip().endswith("man1/clvae-train.1"), describe(p))
        text = sh(["man", "-l", os.path.join(root, mandir, "man1", "clvae-train.1")],
                  env={"MANWIDTH": "100", "MANPAGER": "cat"}).stdout
        for word in ("--likelihood", "CLVAE_PLATFORM", "CLVAE_MAX_ALLOC", "130", "EXAMPLES",
                     "clvae-generate(1)"):
            check(f"clvae-train(1) holds {word}", word in text.replace("\u2010", "-"),
                  text[:400])


def check_bash(script, commands, built, tmp):
    check("bash completion installed", os.path.isfile(script), script)
    work = os.path.join(tmp, "cwd")
    os.makedirs(os.path.join(work, "dset"))
    open(os.path.join(work, "dfile.safetensors"), "w").close()
    bash = Bash(script, work)
    p = sh(["bash", "--norc", "--noprofile", "-c", f"source {script} && complete -p clvae"])
    check("bash: sourcing the completion registers _clvae for clvae",
          p.returncode == 0 and not p.stderr and "-F _clvae" in p.stdout, describe(p))
    cases = [
        ("clvae tr", ["train"]),
        ("clvae ", sorted(commands + ["--help", "--version"])),
        ("clvae train --lik", ["--likelihood"]),
        ("clvae train --likelihood ", ["bernoulli", "logistic"]),
        ("clvae train --likelihood=", ["bernoulli", "logistic"]),
        ("clvae train --likelihood=lo", ["logistic"]),
        ("clvae train --optimizer ", ["adam", "adamw"]),
        ("clvae train --lr-schedule ", ["constant", "cosine", "step"]),
        ("clvae train --crop ", ["center", "none"]),
        ("clvae train --binarize ", ["dynamic", "static"]),
        ("clvae tune --likelihood ", ["bernoulli", "logistic"]),
        ("clvae encode --split ", ["test", "train"]),
        ("clvae train --data d", ["dset"]),
        ("clvae eval --model d", ["dfile.safetensors", "dset"]),
        ("clvae train --epochs ", []),
    ]
    if "export" in commands:
        cases.append(("clvae export --part ", ["decoder", "encoder"]))
    for line, want in cases:
        got, why = bash.complete(line)
        check(f"bash: `{line}<TAB>` gives {' '.join(want) or 'nothing'}",
              got is not None and sorted(got) == sorted(want), why or f"gave {got}")
    for command, text in built.items():
        want = help_options(text)
        got, why = bash.complete(f"clvae {command} -")
        missing = sorted(want - set(got or []))
        check(f"bash: `clvae {command} -<TAB>` offers the {len(want)} options of its --help",
              got is not None and not missing, why or f"missing {missing}")
    return bash


ZSH_DRIVER = r"""
# An interactive zsh in a pseudo-terminal (zsh/zpty) with the completion's folder on $fpath and
# compadd wrapped to write every match to $2; types $3 and a TAB, bound to a widget that completes
# and then writes $2.done.
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PS1='' PROMPT='' RPROMPT=''"
zpty -w z "fpath=(${(q)1} \$fpath); autoload -Uz compinit; compinit -u -D"
zpty -w z "compadd() { local -a h; builtin compadd -O h \"\$@\"; print -rl -- \"\${h[@]}\" >> ${(q)2}; builtin compadd \"\$@\"; }"
zpty -w z "zstyle ':completion:*' menu no"
zpty -w z "tab() { zle complete-word; : > ${(q)2}.done; }; zle -N tab; bindkey '^I' tab"
zpty -w -n z "$3"$'\t'
for i in {1..600}; do [[ -e $2.done ]] && break; sleep 0.1; done
zpty -d z
"""


def zsh_complete(script, line, tmp):
    """The matches zsh's completion offers for line (the cursor at its end), or None."""
    driver, out = os.path.join(tmp, "zsh-driver.zsh"), os.path.join(tmp, "zsh-matches")
    with open(driver, "w") as f:
        f.write(ZSH_DRIVER)
    for path in (out, out + ".done"):
        if os.path.exists(path):
            os.unlink(path)
    p = sh(["zsh", "-f", driver, os.path.dirname(script), out, line])
    if not os.path.exists(out + ".done"):
        return None, "the completion did not finish in 60 s; " + describe(p)
    return (open(out).read().split() if os.path.exists(out) else []), ""


def check_zsh(script, built, tmp):
    check("zsh completion installed", os.path.isfile(script), script)
    if not os.path.isfile(script):
        return
    text = open(script, encoding="utf-8").read()
    check("zsh: the file starts #compdef clvae", text.startswith("#compdef clvae\n"), text[:40])
    if shutil.which("zsh"):
        p = sh(["zsh", "-n", script])
        check("zsh -n _clvae: parses", p.returncode == 0 and not p.stderr, describe(p))
        # As zsh finds it: compinit reads the #compdef line of each file on $fpath.
        p = sh(["zsh", "-fc", f"fpath=({shlex.quote(os.path.dirname(script))} $fpath); "
                              "autoload -Uz compinit && compinit -u -D && print -r -- "
                              "${_comps[clvae]}"])
        check("zsh: compinit with the installed site-functions on $fpath binds clvae to _clvae",
              p.returncode == 0 and p.stdout.strip() == "_clvae", describe(p))
    else:
        skip("zsh -n _clvae", "zsh is not installed")
    if shutil.which("zsh"):
        for line, want in [("clvae tr", ["train"]), ("clvae train --lik", ["--likelihood"]),
                           ("clvae train --likelihood ", ["bernoulli", "logistic"]),
                           ("clvae tune --likelihood ", ["bernoulli", "logistic"]),
                           ("clvae encode --split ", ["test", "train"])]:
            got, why = zsh_complete(script, line, tmp)
            check(f"zsh: `{line}<TAB>` gives {' '.join(want)}",
                  got is not None and sorted(set(got)) == want, why or f"gave {got}")
    for command, help_text in built.items():
        m = re.search(r"^    " + re.escape(command) + r"\)\n(.*?)^        ;;", text, re.M | re.S)
        body = m.group(1) if m else ""
        missing = sorted(o for o in help_options(help_text)
                         if not re.search(r"[{(',]" + re.escape(o) + r"[\[,})]", body))
        check(f"zsh: `clvae {command}` completes the options of its --help",
              m is not None and not missing, f"missing {missing}")


def check_values(clvae, bash, commands):
    """Each value the completion offers is accepted by the command's parser (parsed before the
    --help after it), and a made-up one is refused naming the option."""
    for command in commands:
        options, _ = bash.complete(f"clvae {command} --")
        for option in options or []:
            values, _ = bash.complete(f"clvae {command} {option} ")
            # Nothing (a number to type), files, or the options again (after a flag): no words.
            if not values or any(v.startswith(("dset", "dfile", "-")) for v in values):
                continue
            for value in values:
                p = sh([clvae, command, option, value, "--help"])
                check(f"clvae {command} {option} {value} --help: accepted (exit 0)",
                      p.returncode == 0, describe(p))
            p = sh([clvae, command, option, "no-such-value", "--help"])
            check(f"clvae {command} {option} no-such-value: refused naming {option}",
                  p.returncode == 2 and option in p.stderr, describe(p))


def check_library(destdir, root, opts):
    """libclvae as a -dev package lays it out: the versioned library with its soname links, the
    one public header, the pkg-config file; its ABI names under CLVAE_0."""
    libdir, includedir = os.path.join(root, opts["libdir"]), os.path.join(root, opts["includedir"])
    names = sorted(n for n in os.listdir(libdir) if n.startswith("libclvae")) \
        if os.path.isdir(libdir) else []
    check(f"{opts['libdir']}: libclvae.so -> libclvae.so.0 -> libclvae.so.0.1.0",
          names == ["libclvae.so", "libclvae.so.0", "libclvae.so.0.1.0"] and
          os.readlink(os.path.join(libdir, "libclvae.so")) == "libclvae.so.0" and
          os.readlink(os.path.join(libdir, "libclvae.so.0")) == "libclvae.so.0.1.0", f"{names}")
    headers = sorted(os.listdir(includedir)) if os.path.isdir(includedir) else []
    check(f"{opts['includedir']}: clvae.h alone", headers == ["clvae.h"], f"{headers}")
    check("pkgconfig/clvae.pc installed",
          os.path.isfile(os.path.join(libdir, "pkgconfig", "clvae.pc")), libdir)
    if shutil.which("objdump"):
        p = sh(["objdump", "-T", os.path.join(libdir, "libclvae.so.0.1.0")])
        public = sorted(line.split()[-1] for line in p.stdout.splitlines()
                        if " CLVAE_0 " in line and line.split()[-1].startswith("clvae_"))
        declared = sorted(set(re.findall(r"\b(clvae_[a-z_]+)\(",
                                         open(os.path.join(includedir, "clvae.h")).read())))
        check(f"objdump -T: the {len(declared)} functions of clvae.h, and they alone, under "
              "CLVAE_0", public == declared and public, f"CLVAE_0 {public}, clvae.h {declared}")
    return libdir


def check_example(clvae, destdir, libdir, sanitize, model, tmp):
    """docs/examples/sample.c built with `pkg-config --cflags --libs clvae` against DESTDIR, run:
    its samples are `clvae generate`'s for the same seed, float for float and PNG for PNG."""
    env = {"PKG_CONFIG_PATH": os.path.join(libdir, "pkgconfig"),
           "PKG_CONFIG_SYSROOT_DIR": destdir}
    p = sh(["pkg-config", "--cflags", "--libs", "clvae"], env=env)
    if not check("pkg-config --cflags --libs clvae (PKG_CONFIG_PATH, _SYSROOT_DIR at DESTDIR)",
                 p.returncode == 0 and "-lclvae" in p.stdout, describe(p)):
        return
    flags = shlex.split(p.stdout)
    if sanitize != "none":  # the library's sanitizer runtime must come first in the program,
        # and the drivers' modules stay mapped for LeakSanitizer as in every test program
        flags += [f"-fsanitize={sanitize}", "-Wl,--export-dynamic-symbol=dlclose",
                  os.path.join(os.environ["SOURCE_ROOT"], "tests", "keep_modules.c")]
    example = os.path.join(os.environ["SOURCE_ROOT"], "docs", "examples", "sample.c")
    program = os.path.join(tmp, "sample")
    p = sh([os.environ.get("CC", "cc"), "-std=c11", "-Wall", "-Wextra", "-Werror", example,
            "-o", program] + flags)
    if not check("cc docs/examples/sample.c $(pkg-config --cflags --libs clvae): builds with no "
                 "warning", p.returncode == 0 and not p.stderr, describe(p)):
        return
    out = {k: os.path.join(tmp, f"{k}.{ext}") for k, ext in
           (("png", "png"), ("raw", "raw"), ("gen_png", "png"), ("gen_raw", "raw"))}
    p = sh([program, model, "5", out["png"], out["raw"]])
    q = sh([clvae, "generate", "--model", model, "-n", "64", "--seed", "5", "-o", out["gen_png"],
            "--raw", out["gen_raw"]])
    same = p.returncode == 0 and q.returncode == 0 and all(
        open(out[a], "rb").read() == open(out[b], "rb").read()
        for a, b in (("raw", "gen_raw"), ("png", "gen_png")))
    check("the example's 64 samples (seed 5) == clvae generate -n 64 --seed 5's --raw and PNG",
          same, describe(p) + " / " + describe(q))


def check_runs(clvae, tmp):
    p = sh([clvae, "--version"])
    check("installed clvae --version", p.returncode == 0 and p.stdout.startswith("clvae "),
          describe(p))
    p = sh([clvae, "devices"])
    check("installed clvae devices: exit 0, lists a device", p.returncode == 0 and
          "device 0" in p.stdout, describe(p))
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    with open(os.path.join(data, "train-images-idx3-ubyte.gz"), "wb") as f:
        f.write(gzip.compress(cli.TRAIN_IMAGES, mtime=0))
    with open(os.path.join(data, "t10k-images-idx3-ubyte"), "wb") as f:
        f.write(cli.TEST_IMAGES)
    out, model = os.path.join(tmp, "out"), os.path.join(tmp, "m.safetensors")
    p = sh([clvae, "train", "--data", data, "--out", out, "--epochs", "1", "--batch", "32",
            "--hidden", "16", "--latent", "2", "--quiet", "--save", model])
    check("installed clvae train: one epoch on 300 8x8 images, metrics.csv and checkpoint",
          p.returncode == 0 and os.path.isfile(os.path.join(out, "metrics.csv")) and
          os.path.isfile(model), describe(p))
    grid = os.path.join(tmp, "grid.png")
    p = sh([clvae, "generate", "--model", model, "-n", "4", "-o", grid])
    check("installed clvae generate: a grid from the checkpoint",
          p.returncode == 0 and os.path.isfile(grid), describe(p))
    return model


def main():
    for var in ("MESON", "BUILD_ROOT", "CLVAE"):
        if not os.environ.get(var):
            print(f"install: FAIL {var} is not set (run by meson test)")
            print("0 passed, 1 failed")
            return 1
    build = os.environ["BUILD_ROOT"]
    tmp = tempfile.mkdtemp(prefix="clvae-install-")
    try:
        destdir = os.path.join(tmp, "destdir")
        p = sh([os.environ["MESON"], "install", "-C", build, "--no-rebuild", "--destdir",
                destdir])
        if not check("meson install --no-rebuild --destdir DESTDIR: exit 0", p.returncode == 0,
                     describe(p)):
            print(f"{passed} passed, {failed} failed")
            return 1
        opts = build_options(build)
        prefix, bindir, datadir, mandir = options_of(build)
        root = destdir + prefix
        # The installed program finds libclvae.so.0 where the system would (a Debian libdir).
        libdir = check_library(destdir, root, opts)
        os.environ["LD_LIBRARY_PATH"] = libdir
        check(f"every file under DESTDIR{prefix}", sorted(os.listdir(destdir)) ==
              [prefix.strip("/").split("/")[0]], f"{os.listdir(destdir)}")
        built_clvae = os.environ["CLVAE"]
        commands = [line.split()[0] for line in
                    sh([built_clvae, "--help"]).stdout.split("commands:\n")[1]
                    .split("\n\n")[0].splitlines()]
        built = {c: sh([built_clvae, c, "--help"]).stdout for c in commands}
        clvae, pages = check_layout(root, bindir, datadir, mandir, commands,
                                    os.environ.get("MAN_PAGES") == "1")
        check_man(root, mandir, pages)
        completions = os.path.join(root, datadir, "bash-completion", "completions", "clvae")
        bash = check_bash(completions, commands, built, tmp)
        check_zsh(os.path.join(root, datadir, "zsh", "site-functions", "_clvae"), built, tmp)
        check_values(clvae, bash, commands)
        model = check_runs(clvae, tmp)
        check_example(clvae, destdir, libdir, opts["b_sanitize"], model, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
