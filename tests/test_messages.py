#!/usr/bin/env python3
"""Every error stays one line whatever the names it quotes: a file name holding a newline, a
carriage return, a tab or a terminal escape is printed with C escapes (\\n, \\r, \\t, \\x1b), for
every command that names a file in its message.

Run as `CLVAE=path/to/clvae python3 tests/test_messages.py`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402  (run, check, expect_error, data_dir, fresh_out)

# A name for each control character class: the escape clvae must print for it.
NAMES = (("new\nline", "new\\nline"), ("carriage\rreturn", "carriage\\rreturn"),
         ("tab\there", "tab\\there"), ("esc\x1b[31mred", "esc\\x1b[31mred"),
         ("bell\x07", "bell\\x07"), ("del\x7f", "del\\x7f"))


def body():
    for raw, shown in NAMES:
        missing = os.path.join(cli.TMP, "missing-" + raw)
        label = repr(raw)
        cli.expect_error(f"train --data {label}: one escaped line", ["train", "--data", missing],
                         cli.EXIT_DATA, [shown])
        cli.expect_error(f"eval --model {label}: one escaped line",
                         ["eval", "--model", missing + ".safetensors"], cli.EXIT_DATA, [shown])
        cli.expect_error(f"generate --model {label}: one escaped line",
                         ["generate", "--model", missing + ".safetensors", "-o",
                          os.path.join(cli.TMP, "g.png")], cli.EXIT_DATA, [shown])
        cli.expect_error(f"plot {label}: one escaped line",
                         ["plot", "--metrics", missing + ".csv", "-o", os.path.join(cli.TMP, "p.png")],
                         cli.EXIT_DATA, [shown])
        # A name that is there but not a checkpoint: the message quotes it from another path.
        bad = os.path.join(cli.TMP, "bad-" + raw + ".safetensors")
        with open(bad, "wb") as f:
            f.write(b"not a checkpoint")
        cli.expect_error(f"eval of a damaged checkpoint {label}: one escaped line",
                         ["eval", "--model", bad], cli.EXIT_DATA, [shown])
        os.remove(bad)
        # An output path in a directory that cannot exist (a file stands where the folder is).
        blocker = os.path.join(cli.TMP, "file-" + raw)
        open(blocker, "w").close()
        data = cli.data_dir("msg" + str(NAMES.index((raw, shown))), train=cli.TRAIN_GZ,
                            test=cli.TEST_IMAGES)
        cli.expect_error(f"train --out under a file {label}: one escaped line",
                         ["train", "--data", data, "--out", os.path.join(blocker, "out")],
                         cli.EXIT_OUTPUT, [shown])
        os.remove(blocker)


if __name__ == "__main__":
    sys.exit(cli.run_suite("messages", body))
