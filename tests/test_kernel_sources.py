#!/usr/bin/env python3
"""The kernels in cl/ are OpenCL C 1.2 as the standard writes it, not as PoCL takes it: PoCL's
clang accepts extensions that other compilers refuse (NVIDIA's driver 580 refused the variadic
macros cl/ once had, and every kernel with them: CL_BUILD_PROGRAM_FAILURE on an H200, 2026-12-04).

Two checks over the files, given in build order (meson.build's cl_files):
- no variadic macro (`#define F(...)`, `__VA_ARGS__`; OpenCL C 1.2, 6.9: not supported), by a
  scan that needs nothing;
- clang in OpenCL C 1.2 mode with its OpenCL declarations and -pedantic-errors accepts the
  program (the files joined, as clvae hands them to the driver), when a clang is installed (the
  test command of README.md installs Debian's `clang`); without one this check is skipped and
  said so.

Run as `python3 tests/test_kernel_sources.py cl/common.cl cl/data.cl ...`.
"""
import re
import shutil
import subprocess
import sys

VARIADIC = re.compile(r"^\s*#\s*define\s+\w+\([^)]*\.\.\.\s*\)|__VA_ARGS__")


def main(files):
    if not files:
        print("usage: test_kernel_sources.py CL_FILE... (in build order)", file=sys.stderr)
        return 2
    failed = 0
    sources = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        sources.append(text)
        hits = [f"{path}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1)
                if VARIADIC.search(line)]
        if hits:
            failed += 1
            print("kernel sources: FAIL no variadic macros (OpenCL C 1.2 has none; NVIDIA's "
                  "compiler refuses them):\n  " + "\n  ".join(hits))
    if not failed:
        print(f"kernel sources: no variadic macros in {len(files)} files ok")
    clang = next((c for c in ("clang", "clang-14", "clang-15", "clang-16") if shutil.which(c)),
                 None)
    if clang is None:
        print("kernel sources: no clang installed: the -pedantic-errors compile is skipped")
    else:
        cmd = [clang, "-x", "cl", "-cl-std=CL1.2", "-Xclang", "-finclude-default-header",
               "-fsyntax-only", "-pedantic-errors", "-"]
        r = subprocess.run(cmd, input="\n".join(sources), capture_output=True, text=True)
        if r.returncode == 0:
            print(f"kernel sources: {clang} -cl-std=CL1.2 -pedantic-errors accepts the program ok")
        else:
            failed += 1
            print(f"kernel sources: FAIL {clang} -cl-std=CL1.2 -pedantic-errors refuses the "
                  f"program (the files joined in build order; <stdin> lines count from the first "
                  f"file's):\n{r.stderr}")
    print(f"test_kernel_sources: {'%d checks FAILED' % failed if failed else 'all checks passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
